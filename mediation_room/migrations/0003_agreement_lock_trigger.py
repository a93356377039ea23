"""The last guard of a locked agreement: PostgreSQL refuses to change or delete its row, its
versions and its signatures, whatever client sends the SQL. (SQLite, the embedded demo database,
relies on the application-level guards only.)"""

from django.db import migrations

GUARD_SQL = """
CREATE OR REPLACE FUNCTION mediation_room_agreement_guard() RETURNS trigger AS $$
BEGIN
    IF OLD.locked_at IS NOT NULL THEN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'agreement % is locked', OLD.id USING ERRCODE = 'P0001';
        END IF;
        -- Only the PDF may be attached after locking.
        IF (to_jsonb(NEW) - 'pdf' - 'updated_at') IS DISTINCT FROM
           (to_jsonb(OLD) - 'pdf' - 'updated_at') THEN
            RAISE EXCEPTION 'agreement % is locked', OLD.id USING ERRCODE = 'P0001';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION mediation_room_agreement_child_guard() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM mediation_room_agreement
        WHERE id = OLD.agreement_id AND locked_at IS NOT NULL
    ) THEN
        RAISE EXCEPTION 'rows of locked agreement % cannot change', OLD.agreement_id
            USING ERRCODE = 'P0001';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER mediation_room_agreement_guard
    BEFORE UPDATE OR DELETE ON mediation_room_agreement
    FOR EACH ROW EXECUTE FUNCTION mediation_room_agreement_guard();
CREATE TRIGGER mediation_room_agreementversion_guard
    BEFORE UPDATE OR DELETE ON mediation_room_agreementversion
    FOR EACH ROW EXECUTE FUNCTION mediation_room_agreement_child_guard();
CREATE TRIGGER mediation_room_agreementsignature_guard
    BEFORE UPDATE OR DELETE ON mediation_room_agreementsignature
    FOR EACH ROW EXECUTE FUNCTION mediation_room_agreement_child_guard();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS mediation_room_agreementsignature_guard ON mediation_room_agreementsignature;
DROP TRIGGER IF EXISTS mediation_room_agreementversion_guard ON mediation_room_agreementversion;
DROP TRIGGER IF EXISTS mediation_room_agreement_guard ON mediation_room_agreement;
DROP FUNCTION IF EXISTS mediation_room_agreement_child_guard();
DROP FUNCTION IF EXISTS mediation_room_agreement_guard();
"""


def create_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # Through a plain cursor without parameters: the SQL contains RAISE's '%' placeholders.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(GUARD_SQL)


def drop_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(DROP_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("mediation_room", "0002_agreements"),
    ]

    operations = [migrations.RunPython(create_guard, drop_guard)]
