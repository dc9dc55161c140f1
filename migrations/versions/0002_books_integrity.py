"""Books integrity in the database: posted journal rows cannot change; on PostgreSQL entries must balance.

PostgreSQL: BEFORE UPDATE OR DELETE triggers on journal_entry and journal_line raise; DEFERRABLE INITIALLY
DEFERRED constraint triggers check at commit that every inserted entry has at least two lines whose debits
and credits are equal and sum to its total_fen. SQLite: BEFORE UPDATE / BEFORE DELETE triggers abort (the
balance check stays in the service there).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("journal_entry", "journal_line")

PG_UPGRADE = [
    """
    CREATE FUNCTION journal_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'posted journal rows are immutable: % on % refused; post a reversal instead',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE FUNCTION journal_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        checked_id bigint;
        line_count integer;
        debits numeric;
        credits numeric;
        total numeric;
    BEGIN
        IF TG_TABLE_NAME = 'journal_entry' THEN checked_id := NEW.id; ELSE checked_id := NEW.entry_id; END IF;
        SELECT total_fen INTO total FROM journal_entry WHERE id = checked_id;
        SELECT count(*), coalesce(sum(debit_fen), 0), coalesce(sum(credit_fen), 0)
            INTO line_count, debits, credits FROM journal_line WHERE entry_id = checked_id;
        IF line_count < 2 OR debits <> credits OR debits <> total THEN
            RAISE EXCEPTION 'journal entry % is not balanced: % lines, debits %, credits %, total_fen %',
                checked_id, line_count, debits, credits, total USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    *(
        f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION journal_refuse_change()"
        for table in TABLES
    ),
    *(
        f"CREATE CONSTRAINT TRIGGER {table}_balanced AFTER INSERT ON {table} "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_check_balanced()"
        for table in TABLES
    ),
]

PG_DOWNGRADE = [
    *(f"DROP TRIGGER IF EXISTS {table}_balanced ON {table}" for table in TABLES),
    *(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}" for table in TABLES),
    "DROP FUNCTION IF EXISTS journal_check_balanced()",
    "DROP FUNCTION IF EXISTS journal_refuse_change()",
]

SQLITE_UPGRADE = [
    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} BEGIN "
    f"SELECT RAISE(ABORT, 'posted journal rows are immutable: {action} on {table} refused; post a reversal'); END"
    for table in TABLES
    for action in ("UPDATE", "DELETE")
]

SQLITE_DOWNGRADE = [
    f"DROP TRIGGER IF EXISTS {table}_no_{action.lower()}" for table in TABLES for action in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    statements = PG_UPGRADE if op.get_bind().dialect.name == "postgresql" else SQLITE_UPGRADE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = PG_DOWNGRADE if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWNGRADE
    for statement in statements:
        op.execute(statement)
