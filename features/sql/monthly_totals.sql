-- National monthly total per (source, product, month) from series.sql's table: regions and calorie
-- categories summed, attributes resolved. The BigQuery twin of features.clean.monthly_totals.
CREATE OR REPLACE TABLE `{totals}` AS
WITH
series AS (
  SELECT source, id_product, calorie_category, year_month, sales_micros, product_name, producer, unknown_key
  FROM `{series}`
  WHERE year_month IS NOT NULL
),
-- A product code seen under two calorie categories stays one series, in the category with most sales
-- (ties: the smallest category name; a missing category sorts first).
category_sales AS (
  SELECT source, id_product, calorie_category, IFNULL(SUM(ABS(sales_micros)), 0) AS sales
  FROM series
  GROUP BY source, id_product, calorie_category
),
dominant AS (
  SELECT source, id_product, calorie_category
  FROM category_sales
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY source, id_product ORDER BY sales DESC, calorie_category
  ) = 1
),
attributes AS (
  SELECT
    source,
    id_product,
    MIN(product_name) AS product_name,
    MIN(producer) AS producer,
    LOGICAL_OR(unknown_key) AS unknown_key
  FROM series
  GROUP BY source, id_product
),
-- A national total is only known when every region reported: a partial sum would look like a drop.
national AS (
  SELECT
    source,
    id_product,
    year_month,
    IF(COUNTIF(sales_micros IS NULL) > 0, NULL, SUM(sales_micros)) AS total_micros,
    COUNTIF(sales_micros IS NULL) > 0 AND COUNTIF(sales_micros IS NOT NULL) > 0 AS partially_reported
  FROM series
  GROUP BY source, id_product, year_month
)
SELECT
  n.source,
  n.id_product,
  n.year_month,
  -- Times the float reciprocal of a micro-unit, as polars divides a column by a constant (bit-equal totals).
  CAST(n.total_micros AS FLOAT64) * @micro_unit AS total_sales,
  d.calorie_category,
  a.product_name,
  a.producer,
  a.unknown_key,
  n.total_micros,
  n.partially_reported
FROM national AS n
LEFT JOIN dominant AS d ON d.source = n.source AND d.id_product = n.id_product
LEFT JOIN attributes AS a ON a.source = n.source AND a.id_product = n.id_product
