-- LSD schema, version 14: the console's roles and sign-in sessions. See docs/console.md.

-- Which console role a key may sign in with: 'read-only' (every page), 'admin' (also adds human feedback and
-- creates and disables keys); NULL (every key made before, and by default): the key cannot sign in.
ALTER TABLE api_keys ADD COLUMN console_role text
    CONSTRAINT api_keys_console_role CHECK (console_role IN ('read-only', 'admin'));

-- One row per console sign-in. The browser holds a random token in an HttpOnly, SameSite=Strict cookie; only its
-- SHA-256 is stored, so a database read does not hand out sessions. The role is read from api_keys on every
-- request, so disabling the key (or taking its role) ends its sessions at once.
CREATE TABLE console_sessions (
    token_sha256 bytea PRIMARY KEY,
    public_id text NOT NULL REFERENCES api_keys (public_id) ON DELETE CASCADE,
    csrf_token text NOT NULL,           -- every state-changing form of this session carries it
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- The console's charts read the statistics tables by time range over every function and provider.
CREATE INDEX inference_by_function_statistics_start ON inference_by_function_statistics (bucket_start);
CREATE INDEX model_provider_statistics_start ON model_provider_statistics (bucket_start);
