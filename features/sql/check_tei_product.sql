-- Ingest's structure checks of TeInvento product dimension files (see check_erp_sales.sql). A row whose id
-- is the header's first column name is the header (a table has no row order: wherever it is); a second
-- one is an id that is not an integer.
SELECT
  f._TABLE_SUFFIX AS file,
  COUNTIF(f.id_product IS NULL OR f.id_product != @product_header) AS data_rows,
  COUNTIF(f.id_product = @product_header) AS header_rows,
  COUNTIF(SAFE_CAST(TRIM(f.id_product) AS INT64) IS NULL AND f.id_product IS DISTINCT FROM @product_header)
    AS bad_integers,
  MIN(
    IF(
      SAFE_CAST(TRIM(f.id_product) AS INT64) IS NULL AND f.id_product IS DISTINCT FROM @product_header, IFNULL(f.id_product, ''), NULL
    )
  ) AS bad_integer,
  0 AS bad_numbers,
  CAST(NULL AS STRING) AS bad_number,
  COUNTIF(
    STRPOS(
      CONCAT(
        IFNULL(f.id_product, ''), IFNULL(f.calorie_category, ''), IFNULL(f.product, ''),
        IFNULL(f.product_brand, ''), IFNULL(f.producer, '')
      ),
      @replacement_character
    ) > 0
  ) AS undecodable_rows,
  0 AS last_value_rows
FROM `{files}` AS f
WHERE f._TABLE_SUFFIX IN UNNEST(@files)
GROUP BY file
