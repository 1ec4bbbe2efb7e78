-- Account administration (docs/security.md, "Account administration"):
-- disabled users, session ids that are not the token, and the last enabled
-- admin protected by the database itself, whoever writes the row.
--
-- Needs PostgreSQL 13 or later (gen_random_uuid). Apply it before starting
-- services of this version: both services' session look-up reads
-- users.disabled_at.

-- A disabled user cannot log in and its sessions stop working at once
-- (disabling also revokes them; the gate checks this column too, so a
-- login that raced the disable cannot slip through).
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- Sessions get an id that is not the token, to be listed and revoked one
-- by one. New sessions get a UUIDv7 from the command service; rows from
-- before this migration a random one.
ALTER TABLE sessions ADD COLUMN id uuid;
UPDATE sessions SET id = gen_random_uuid() WHERE id IS NULL;
ALTER TABLE sessions ALTER COLUMN id SET NOT NULL;
CREATE UNIQUE INDEX sessions_id_idx ON sessions (id);

-- A user's notification now also fires on disable and enable.
CREATE OR REPLACE FUNCTION stockflow_auth_user_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('stockflow_auth', OLD.id::text);
    RETURN OLD;
  END IF;
  IF NEW.role IS DISTINCT FROM OLD.role
     OR NEW.store_ids IS DISTINCT FROM OLD.store_ids
     OR NEW.password_hash IS DISTINCT FROM OLD.password_hash
     OR NEW.username IS DISTINCT FROM OLD.username
     OR NEW.disabled_at IS DISTINCT FROM OLD.disabled_at THEN
    PERFORM pg_notify('stockflow_auth', NEW.id::text);
  END IF;
  RETURN NEW;
END $$;

-- The last enabled admin cannot be demoted, disabled or deleted. The check
-- runs after the row changed, under a transaction-level advisory lock, so
-- two transactions each demoting one of two admins cannot both pass: the
-- second one waits for the first to commit and then sees it (READ
-- COMMITTED takes a new snapshot for each statement of the function).
-- SQLSTATE SF409 tells the command service to answer 409 last_admin.
CREATE FUNCTION stockflow_auth_last_admin() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.role = 'admin' AND OLD.disabled_at IS NULL
     AND (TG_OP = 'DELETE' OR NEW.role <> 'admin'
          OR NEW.disabled_at IS NOT NULL) THEN
    PERFORM pg_advisory_xact_lock(hashtext('stockflow_last_admin'));
    IF NOT EXISTS (SELECT 1 FROM users
                   WHERE role = 'admin' AND disabled_at IS NULL) THEN
      RAISE EXCEPTION 'the last enabled admin cannot be demoted, disabled '
                      'or deleted'
        USING ERRCODE = 'SF409';
    END IF;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER users_last_admin
  AFTER UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION stockflow_auth_last_admin();
