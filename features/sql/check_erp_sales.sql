-- Ingest's structure checks of ERP files that a load job leaves to SQL (one table per file loaded by
-- features.bq_checks, every column a STRING; the wildcard suffix names the file): per file, its rows, the
-- year values that are not integers, the sales values that are neither missing nor a finite number within
-- the bound, and the rows holding U+FFFD (bytes BigQuery could not read as UTF-8).
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
        IFNULL(f.year, ''), IFNULL(f.month, ''), IFNULL(f.country, ''), IFNULL(f.calorie_category, ''),
        IFNULL(f.flavor, ''), IFNULL(f.zone, ''), IFNULL(f.product_code, ''), IFNULL(f.product_name, ''),
        IFNULL(f.sales, '')
      ),
      @replacement_character
    ) > 0
  ) AS undecodable_rows,
  0 AS last_value_rows
FROM `{files}` AS f
WHERE f._TABLE_SUFFIX IN UNNEST(@files)
GROUP BY file
