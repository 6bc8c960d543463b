-- LSD schema, version 17: how many of a statistics bucket's inferences (attempts) had a cost. A model without a
-- price gives inferences whose cost is NULL, which the buckets' `cost` sums as 0: the console read that as "$0"
-- where the truth is "unknown". With `priced_count` a bucket whose count is 0 has no known cost. Buckets refreshed
-- before this migration count their inferences as priced when their cost is not zero (a zero cost there is taken
-- as unknown).

ALTER TABLE inference_by_function_statistics ADD COLUMN priced_count bigint NOT NULL DEFAULT 0;
ALTER TABLE model_provider_statistics ADD COLUMN priced_count bigint NOT NULL DEFAULT 0;
UPDATE inference_by_function_statistics SET priced_count = inference_count WHERE cost <> 0;
UPDATE model_provider_statistics SET priced_count = attempts WHERE cost <> 0;
