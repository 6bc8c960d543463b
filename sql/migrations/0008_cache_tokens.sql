-- LSD schema, version 8: prompt-cache token counts (issue 21). Both are parts of input_tokens: the input tokens
-- the provider read from its prompt cache, and those it wrote to it. NULL when the provider did not say.
ALTER TABLE chat_inferences ADD COLUMN cache_read_input_tokens integer;
ALTER TABLE chat_inferences ADD COLUMN cache_write_input_tokens integer;
ALTER TABLE json_inferences ADD COLUMN cache_read_input_tokens integer;
ALTER TABLE json_inferences ADD COLUMN cache_write_input_tokens integer;
ALTER TABLE model_inferences ADD COLUMN cache_read_input_tokens integer;
ALTER TABLE model_inferences ADD COLUMN cache_write_input_tokens integer;
