-- LSD schema, version 10: dicl_examples — the stored examples a `dicl` variant puts in its prompt
-- (docs/experiments.md). Plain PostgreSQL: no extension needed.
--
-- Each example is an input and the output to imitate, with the input's embedding (by the variant's
-- `embedding_model`) stored at unit length, so cosine distance is 1 - the dot product. `sketch` holds the signs of
-- 256 orthogonal ±1 projections of the embedding (lsd.store.dicl.sketch): the nearest-neighbour query first keeps
-- the examples whose sketches are nearest in Hamming distance (bit_count of the XOR, cheap on every row, no vector
-- read), then ranks those by exact cosine distance. Under 100 examples of a variant every one is ranked.

CREATE TABLE dicl_examples (
    id uuid PRIMARY KEY,                -- UUIDv7
    function_name text NOT NULL,
    variant_name text NOT NULL,
    namespace text,                     -- reserved: NULL for every example today
    input jsonb NOT NULL,               -- as chat_inferences.input stores it: {"system"?, "messages": [...]}
    output jsonb NOT NULL,              -- chat: content blocks; json: {"raw", "parsed"}
    embedding real[] NOT NULL,          -- unit length
    sketch bit(256) NOT NULL,
    source_inference_id uuid,           -- the inference it was made from (lsd dicl load), if any
    created_at timestamptz NOT NULL,
    CHECK (cardinality(embedding) > 0)
);

CREATE INDEX dicl_examples_variant ON dicl_examples (function_name, variant_name);
CREATE UNIQUE INDEX dicl_examples_source ON dicl_examples (function_name, variant_name, source_inference_id)
    WHERE source_inference_id IS NOT NULL;

-- The dot product of two arrays of the same length (cosine similarity of unit vectors).
CREATE FUNCTION lsd_dot(a real[], b real[]) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT sum(x::double precision * y) FROM unnest(a, b) AS t(x, y) $$;
