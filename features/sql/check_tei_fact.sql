-- Ingest's structure checks of TeInvento fact files (see check_erp_sales.sql), and per file how many rows
-- hold, as their product id, the value of a last line that ends without a line break (last_values:
-- '<file>/<value>'): a value found on no other row was cut off.
SELECT
  f._TABLE_SUFFIX AS file,
  COUNT(*) AS data_rows,
  0 AS header_rows,
  COUNTIF(SAFE_CAST(TRIM(f.year) AS INT64) IS NULL) AS bad_integers,
  MIN(IF(SAFE_CAST(TRIM(f.year) AS INT64) IS NULL, IFNULL(f.year, ''), NULL)) AS bad_integer,
  COUNTIF(
    TRIM(IFNULL(f.sales, '')) != ''
    AND NOT IFNULL(ABS(SAFE_CAST(TRIM(f.sales) AS FLOAT64)) <= @max_abs_sales, FALSE)
  ) AS bad_numbers,
  MIN(
    IF(
      TRIM(IFNULL(f.sales, '')) != ''
      AND NOT IFNULL(ABS(SAFE_CAST(TRIM(f.sales) AS FLOAT64)) <= @max_abs_sales, FALSE),
      f.sales,
      NULL
    )
  ) AS bad_number,
  COUNTIF(
    STRPOS(
      CONCAT(
        IFNULL(f.year, ''), IFNULL(f.month, ''), IFNULL(f.sales, ''), IFNULL(f.id_region, ''),
        IFNULL(f.id_product, '')
      ),
      @replacement_character
    ) > 0
  ) AS undecodable_rows,
  COUNTIF(CONCAT(f._TABLE_SUFFIX, '/', f.id_product) IN UNNEST(@last_values)) AS last_value_rows
FROM `{files}` AS f
WHERE f._TABLE_SUFFIX IN UNNEST(@files)
GROUP BY file
