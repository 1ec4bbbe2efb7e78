-- Accounts and sessions (DESIGN.md decision 7). These tables are NOT read
-- models: they are written by the command service's account endpoints only,
-- never rebuilt from the log, and nothing of them ever goes on the bus
-- (events carry the acting user's id, never credentials).
--
-- Passwords are stored as libsodium crypto_pwhash_str strings (argon2id,
-- "$argon2id$v=19$m=...,t=...,p=1$salt$hash"). Session tokens are 256
-- random bits handed to the client once; only SHA-256 of the token text is
-- stored, so a copy of this table does not let anyone log in.
--
-- Revocation and role changes are announced on the channel stockflow_auth
-- (payload: the user id) by triggers, whoever writes the row; both services
-- LISTEN and drop their cached sessions of that user at once.

CREATE TABLE users (
  id            uuid PRIMARY KEY,
  username      text NOT NULL UNIQUE
                CHECK (username = lower(username)
                       AND length(username) BETWEEN 1 AND 64),
  email         text NOT NULL CHECK (length(email) <= 254),
  password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
  role          text NOT NULL DEFAULT 'viewer'
                CHECK (role IN ('admin', 'manager', 'clerk', 'viewer')),
  store_ids     uuid[] NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  version       bigint NOT NULL DEFAULT 1
);
CREATE INDEX users_admin_idx ON users (role) WHERE role = 'admin';

CREATE TABLE sessions (
  token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- A session revoked (logout) or a live one deleted: its user's cached
-- sessions go. Deleting sessions that are already revoked or expired (the
-- command service's clean-up) sends nothing.
CREATE FUNCTION stockflow_auth_session_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.revoked_at IS NULL AND OLD.expires_at > now() THEN
      PERFORM pg_notify('stockflow_auth', OLD.user_id::text);
    END IF;
    RETURN OLD;
  END IF;
  IF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
    PERFORM pg_notify('stockflow_auth', NEW.user_id::text);
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER sessions_notify
  AFTER UPDATE OR DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION stockflow_auth_session_notify();

-- A role or store list changed, or the user deleted: the cached principal
-- of every session of that user is stale.
CREATE FUNCTION stockflow_auth_user_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('stockflow_auth', OLD.id::text);
    RETURN OLD;
  END IF;
  IF NEW.role IS DISTINCT FROM OLD.role
     OR NEW.store_ids IS DISTINCT FROM OLD.store_ids
     OR NEW.password_hash IS DISTINCT FROM OLD.password_hash
     OR NEW.username IS DISTINCT FROM OLD.username THEN
    PERFORM pg_notify('stockflow_auth', NEW.id::text);
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER users_notify
  AFTER UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION stockflow_auth_user_notify();
