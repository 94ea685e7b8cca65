-- Raw rows of both sources -> one row per (source, product, calorie category, region, month): the netted
-- sales in integer micro-units and, per group, how many raw rows each cleaning rule touched.
-- The BigQuery twin of features/clean.py (clean_erp + combine_netted, clean_teinvento); monthly_totals.sql
-- builds the national totals from it and rule_counts.sql sums its counts. Rows whose month is invalid form
-- groups with a NULL year_month: they carry counts only and are never netted.
-- Tables: {erp_sales}, {tei_fact}, {tei_product}, {tei_region} hold the raw files, every column a STRING.
CREATE OR REPLACE TABLE `{series}` AS
WITH
months AS (
  SELECT name, position + 1 AS number
  FROM UNNEST(@months) AS name WITH OFFSET AS position
),
erp_rows AS (
  SELECT
    SAFE.DATE(SAFE_CAST(TRIM(r.year) AS INT64), m.number, 1) AS year_month,
    TRIM(r.product_code) AS id_product,
    TRIM(r.calorie_category) AS calorie_category,
    TRIM(r.zone) AS region,
    CONCAT(TRIM(r.product_name), ' ', TRIM(r.flavor)) AS product_name,
    r.sales AS sales_raw,
    SAFE_CAST(TRIM(r.sales) AS FLOAT64) AS sales
  FROM `{erp_sales}` AS r
  LEFT JOIN months AS m ON m.name = TRIM(r.month)
),
-- Dimensions: one row per key. The header row a file may start with is not data. A key listed twice keeps
-- its smallest attributes (a table has no row order to keep "the first" by).
tei_products AS (
  SELECT
    TRIM(id_product) AS id_product,
    TRIM(calorie_category) AS calorie_category,
    TRIM(product) AS product_name,
    TRIM(producer) AS producer
  FROM `{tei_product}`
  WHERE id_product IS NULL OR id_product != @product_header
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY TRIM(id_product)
    ORDER BY TRIM(calorie_category), TRIM(product), TRIM(producer)
  ) = 1
),
tei_regions AS (
  SELECT TRIM(id_region) AS id_region, TRIM(region) AS region
  FROM `{tei_region}`
  WHERE id_region IS NULL OR id_region != @region_header
  QUALIFY ROW_NUMBER() OVER (PARTITION BY TRIM(id_region) ORDER BY TRIM(region)) = 1
),
tei_rows AS (
  SELECT
    SAFE.DATE(SAFE_CAST(TRIM(f.year) AS INT64), m.number, 1) AS year_month,
    TRIM(f.id_product) AS id_product,
    TRIM(f.id_region) AS id_region,
    f.sales AS sales_raw,
    SAFE_CAST(TRIM(f.sales) AS FLOAT64) AS sales
  FROM `{tei_fact}` AS f
  LEFT JOIN months AS m ON m.name = TRIM(f.month)
),
-- Facts keep unknown or unnamed products and regions: flagged, never dropped.
tei_joined AS (
  SELECT
    r.year_month,
    r.id_product,
    p.calorie_category,
    g.region,
    p.product_name,
    p.producer,
    r.sales_raw,
    r.sales,
    p.product_name IS NULL OR p.product_name = '' AS unknown_product,
    g.region IS NULL OR g.region = '' AS unknown_region
  FROM tei_rows AS r
  LEFT JOIN tei_products AS p ON p.id_product = r.id_product
  LEFT JOIN tei_regions AS g ON g.id_region = r.id_region
),
all_rows AS (
  SELECT
    @erp_source AS source,
    year_month,
    id_product,
    calorie_category,
    region,
    product_name,
    @erp_producer AS producer,
    FALSE AS unknown_key,
    FALSE AS unknown_product,
    region NOT IN UNNEST(@erp_regions) AS unknown_region,
    sales_raw,
    sales
  FROM erp_rows
  UNION ALL
  SELECT
    @tei_source,
    year_month,
    id_product,
    calorie_category,
    IF(unknown_region, @unknown_region, region),
    NULLIF(product_name, ''),
    producer,
    unknown_product,
    unknown_product,
    unknown_region,
    sales_raw,
    sales
  FROM tei_joined
),
-- A sales value is missing, or a number within the bound (NaN and +-inf compare false: out of range).
scaled AS (
  SELECT
    *,
    ABS(sales) <= @max_abs_sales AS in_range,
    sales * @micros AS sales_scaled
  FROM all_rows
),
micro_units AS (
  SELECT
    *,
    -- Residue (below the residue bound) -> 0; otherwise micro-units rounded half to even (as polars rounds).
    CAST(
      CASE
        WHEN NOT in_range THEN NULL
        WHEN ABS(sales) < @residue THEN 0
        WHEN ABS(sales_scaled - TRUNC(sales_scaled)) = 0.5 THEN 2 * ROUND(sales_scaled / 2)
        ELSE ROUND(sales_scaled)
      END AS INT64
    ) AS sales_micros
  FROM scaled
)
SELECT
  source,
  id_product,
  calorie_category,
  region,
  year_month,
  -- Netting is an exact integer sum (BIGNUMERIC: no overflow, no dependence on summation order).
  SUM(CAST(sales_micros AS BIGNUMERIC)) AS sales_micros,
  MIN(product_name) AS product_name,
  MIN(producer) AS producer,
  LOGICAL_OR(unknown_key) AS unknown_key,
  COUNT(*) AS rows_read,
  COUNTIF(year_month IS NULL) AS invalid_month,
  COUNTIF(sales IS NULL AND (sales_raw IS NULL OR sales_raw = '')) AS missing_sales,
  COUNTIF(sales IS NULL AND TRIM(sales_raw) != '') AS unparseable_sales,
  COUNTIF(sales IS NOT NULL AND NOT in_range) AS sales_out_of_range,
  COUNTIF(ABS(sales) < @residue AND sales != 0) AS residue_to_zero,
  COUNTIF(sales = 0) AS exact_zero,
  COUNTIF(sales <= -@residue AND in_range) AS returns_netted,
  COUNTIF(year_month IS NOT NULL AND unknown_product) AS rows_unknown_product,
  COUNTIF(year_month IS NOT NULL AND unknown_region) AS rows_unknown_region
FROM micro_units
GROUP BY source, id_product, calorie_category, region, year_month
