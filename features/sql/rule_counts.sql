-- Every cleaning rule's count (data_quality.json "rules", except months_filled_missing, which the worker's
-- densify adds) as (rule, n) rows, plus "staged.<table>" rows: the raw rows each staging table holds, which
-- the worker checks against the ingest manifests.
CREATE OR REPLACE TABLE `{counts}` AS
WITH
sources AS (
  SELECT name FROM UNNEST(@sources) AS name
),
per_source AS (
  SELECT
    src.name AS source,
    IFNULL(SUM(s.rows_read), 0) AS rows_read,
    IFNULL(SUM(s.invalid_month), 0) AS invalid_month,
    IFNULL(SUM(s.missing_sales), 0) AS missing_sales,
    IFNULL(SUM(s.unparseable_sales), 0) AS unparseable_sales,
    IFNULL(SUM(s.sales_out_of_range), 0) AS sales_out_of_range,
    IFNULL(SUM(s.residue_to_zero), 0) AS residue_to_zero,
    IFNULL(SUM(s.exact_zero), 0) AS exact_zero,
    IFNULL(SUM(s.returns_netted), 0) AS returns_netted,
    IFNULL(SUM(s.rows_unknown_product), 0) AS rows_unknown_product,
    IFNULL(SUM(s.rows_unknown_region), 0) AS rows_unknown_region,
    COUNTIF(s.year_month IS NOT NULL) AS series_months_after_netting
  FROM sources AS src
  LEFT JOIN `{series}` AS s ON s.source = src.name
  GROUP BY src.name
),
source_rules AS (
  SELECT CONCAT(p.source, '.', r.rule) AS rule, r.n
  FROM per_source AS p,
    UNNEST([
      STRUCT('rows_read' AS rule, p.rows_read AS n),
      ('invalid_month', p.invalid_month),
      ('missing_sales', p.missing_sales),
      ('unparseable_sales', p.unparseable_sales),
      ('sales_out_of_range', p.sales_out_of_range),
      ('residue_to_zero', p.residue_to_zero),
      ('exact_zero', p.exact_zero),
      ('returns_netted', p.returns_netted),
      ('rows_unknown_product', p.rows_unknown_product),
      ('rows_unknown_region', p.rows_unknown_region),
      ('series_months_after_netting', p.series_months_after_netting)
    ]) AS r
  WHERE p.source = @tei_source OR r.rule != 'rows_unknown_product'
),
product_rows AS (
  SELECT TRIM(id_product) AS id_product
  FROM `{tei_product}`
  WHERE id_product IS NULL OR id_product != @product_header
),
region_rows AS (
  SELECT TRIM(id_region) AS id_region
  FROM `{tei_region}`
  WHERE id_region IS NULL OR id_region != @region_header
),
-- A product with rows under two calorie categories (a missing category counts as one).
product_categories AS (
  SELECT source, id_product
  FROM (SELECT DISTINCT source, id_product, calorie_category FROM `{series}` WHERE year_month IS NOT NULL)
  GROUP BY source, id_product
  HAVING COUNT(*) > 1
)
SELECT rule, n FROM source_rules
UNION ALL
SELECT
  CONCAT(@tei_source, '.product_dim_duplicate_keys'),
  (SELECT COUNT(*) FROM product_rows) - (SELECT COUNT(*) FROM (SELECT DISTINCT id_product FROM product_rows))
UNION ALL
SELECT
  CONCAT(@tei_source, '.region_dim_duplicate_keys'),
  (SELECT COUNT(*) FROM region_rows) - (SELECT COUNT(*) FROM (SELECT DISTINCT id_region FROM region_rows))
UNION ALL
SELECT 'products_with_two_calorie_categories', (SELECT COUNT(*) FROM product_categories)
UNION ALL
SELECT 'product_months_partially_reported', (SELECT COUNTIF(partially_reported) FROM `{totals}`)
UNION ALL
SELECT 'staged.erp_sales', (SELECT COUNT(*) FROM `{erp_sales}`)
UNION ALL
SELECT 'staged.tei_fact', (SELECT COUNT(*) FROM `{tei_fact}`)
UNION ALL
SELECT 'staged.tei_product', (SELECT COUNT(*) FROM product_rows)
UNION ALL
SELECT 'staged.tei_region', (SELECT COUNT(*) FROM region_rows)
