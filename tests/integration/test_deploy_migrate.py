"""deploy/migrate.sh (the migrations step of the systemd, compose and
Kubernetes deployments) against the real PostgreSQL of the test stack: a
new database gets every migration once, in order, a second run applies
nothing, a broken migration leaves nothing of itself, and the services'
tables are there afterwards."""

import os
import re
import shutil
import subprocess
import tempfile

import client

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MIGRATE = os.path.join(ROOT, "deploy", "migrate.sh")
MIGRATIONS = os.path.join(ROOT, "schemas", "migrations")


def _dsn(ctx, db):
    return re.sub(r"dbname=\S+", f"dbname={db}", ctx.env["STOCKFLOW_PG_DSN"])


def _psql(dsn, sql):
    out = subprocess.run(["psql", "-X", "-qtA", "-v", "ON_ERROR_STOP=1",
                          "-d", dsn, "-c", sql], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, f"psql {sql!r}: {out.stderr}"
    return out.stdout.strip()


def _migrate(dsn, folder=MIGRATIONS):
    env = dict(os.environ, STOCKFLOW_PG_DSN=dsn)
    return subprocess.run([MIGRATE, folder], capture_output=True, text=True,
                          timeout=120, env=env)


def test_migrate_script_applies_each_migration_once(ctx):
    db = "sf_migrate_" + client.unique("t").replace("-", "_")
    admin = _dsn(ctx, "postgres")
    _psql(admin, f"create database {db}")
    tmp = tempfile.mkdtemp()
    try:
        dsn = _dsn(ctx, db)
        files = sorted(f[:-4] for f in os.listdir(MIGRATIONS)
                       if f.endswith(".sql"))
        r = _migrate(dsn)
        assert r.returncode == 0, f"first run: {r.stderr}"
        assert f"{len(files)} applied now" in r.stderr, r.stderr
        got = _psql(dsn, "select version from schema_migrations "
                         "order by version").split("\n")
        assert got == files, f"applied {got}, want {files}"
        # The tables the services need are there (users.disabled_at is the
        # newest column the session look-up reads).
        assert _psql(dsn, "select count(*) from information_schema.columns "
                          "where table_name = 'users' and "
                          "column_name = 'disabled_at'") == "1"
        r = _migrate(dsn)
        assert r.returncode == 0 and "0 applied now" in r.stderr, r.stderr
        # A broken migration fails and leaves nothing of itself.
        for f in os.listdir(MIGRATIONS):
            shutil.copy(os.path.join(MIGRATIONS, f), tmp)
        with open(os.path.join(tmp, "999_broken.sql"), "w") as f:
            f.write("create table sf_half_done (x int);\nselect 1/0;\n")
        r = _migrate(dsn, tmp)
        assert r.returncode == 1 and "999_broken failed" in r.stderr, \
            f"broken migration: exit {r.returncode}: {r.stderr}"
        assert _psql(dsn, "select count(*) from schema_migrations where "
                          "version = '999_broken'") == "0"
        assert _psql(dsn, "select to_regclass('sf_half_done') is null") == \
            "t", "the broken migration left its table behind"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _psql(admin, f"drop database if exists {db}")
