-- Ingest's structure checks of TeInvento region dimension files (see check_tei_product.sql).
SELECT
  f._TABLE_SUFFIX AS file,
  COUNTIF(f.id_region IS NULL OR f.id_region != @region_header) AS data_rows,
  COUNTIF(f.id_region = @region_header) AS header_rows,
  COUNTIF(SAFE_CAST(TRIM(f.id_region) AS INT64) IS NULL AND f.id_region IS DISTINCT FROM @region_header)
    AS bad_integers,
  MIN(
    IF(
      SAFE_CAST(TRIM(f.id_region) AS INT64) IS NULL AND f.id_region IS DISTINCT FROM @region_header, IFNULL(f.id_region, ''), NULL
    )
  ) AS bad_integer,
  0 AS bad_numbers,
  CAST(NULL AS STRING) AS bad_number,
  COUNTIF(
    STRPOS(CONCAT(IFNULL(f.id_region, ''), IFNULL(f.country, ''), IFNULL(f.region, '')), @replacement_character)
    > 0
  ) AS undecodable_rows,
  0 AS last_value_rows
FROM `{files}` AS f
WHERE f._TABLE_SUFFIX IN UNNEST(@files)
GROUP BY file
