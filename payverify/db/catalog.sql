-- What doctor's rights and index checks and `db grants` read of the database's catalog, by name
-- (loaded by db/queries.py like queries.sql). Parameters are %(name)s only, so a literal % is %%.
--
-- Notes:
-- - Rights are checked by oid for sequences: by name would need USAGE on the sequence's schema, which
--   nextval() does not.
-- - Rights checked through a view stop at the view: a base table's are the view owner's affair. Likewise
--   an index on a view's base table is the view owner's to give, so a view is reported as a view.
-- - Excess rights on the site's tables: a superuser, an owner (or a member of the owner's role, even
--   NOINHERIT: SET ROLE gets there), and table-wide rights.
-- - Before `db upgrade` there is no payverify_run_counts: then reconcile has not run either. A user who
--   may not read it cannot tell (the rights check says so); reconcile's indexes count as needed then.
-- - The sequences a default's nextval() takes ids from (serial columns and hand-made defaults) are
--   found on the given tables and, for views, on the relations behind them at any depth: nextval() is
--   checked against the inserting role. Identity columns need no right on their sequence.
-- - Site views with security_invoker (PG 15) check their base tables' rights against the caller: the
--   role would need rights on those base tables, which `db grants` does not name.

-- ---- rights (db/rights.py) ------------------------------------------------------------------------

-- name: rights_columns
-- Of these (table, column, privilege) triples in a schema, the ones the user lacks.
SELECT x.tbl AS table_name, x.col AS column_name, x.priv AS privilege
FROM unnest(%(tables)s::text[], %(columns)s::text[], %(privileges)s::text[]) AS x(tbl, col, priv)
WHERE NOT has_column_privilege(format('%%I.%%I', %(schema)s::text, x.tbl), x.col, x.priv)

-- name: rights_tables
-- Of these (table, privilege) pairs in a schema, the ones the user lacks.
SELECT x.tbl AS table_name, x.priv AS privilege
FROM unnest(%(tables)s::text[], %(privileges)s::text[]) AS x(tbl, priv)
WHERE NOT has_table_privilege(format('%%I.%%I', %(schema)s::text, x.tbl), x.priv)

-- name: rights_sequences
-- Of these sequences (by oid), the ones the user may not take ids from.
SELECT x.seq::regclass::text AS sequence_name
FROM unnest(%(sequences)s::bigint[]) AS x(seq)
WHERE NOT has_sequence_privilege(x.seq::oid, 'USAGE')

-- name: rights_excess
-- The user's rights on the site's tables beyond payverify's: superuser, owned tables, table-wide rights.
SELECT current_user::text AS username,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       array(SELECT c.relname::text FROM pg_class c
             WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
               AND c.relname = ANY(%(tables)s) AND pg_has_role(c.relowner, 'MEMBER')
             ORDER BY 1) AS owned,
       array(SELECT p.privilege || ' ' || c.relname::text FROM pg_class c
             CROSS JOIN unnest(ARRAY['DELETE', 'TRUNCATE', 'UPDATE', 'INSERT', 'TRIGGER']) AS p(privilege)
             WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
               AND c.relname = ANY(%(tables)s) AND has_table_privilege(c.oid, p.privilege)
               AND NOT (p.privilege = 'INSERT' AND c.relname = %(inserted)s)
             ORDER BY array_position(ARRAY['DELETE', 'TRUNCATE', 'UPDATE', 'INSERT', 'TRIGGER'],
                                     p.privilege), c.relname) AS table_wide

-- ---- the site's indexes (db/indexes.py) ------------------------------------------------------------

-- name: site_index_on
-- A valid btree index on the table with the column first (partial or not), and whether it is a view.
SELECT current_schema()::text AS schema, c.relkind::text AS relkind,
       (SELECT i.relname::text FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_am am ON am.oid = i.relam AND am.amname = 'btree'
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
        WHERE x.indrelid = c.oid AND x.indisvalid AND x.indisready AND a.attname = %(column)s
        ORDER BY x.indpred IS NOT NULL, i.relname LIMIT 1) AS index_name
FROM pg_class c
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  AND c.relname = %(table)s

-- name: run_counts_table
-- Whether payverify_run_counts exists (after `db upgrade`) and the user may read it.
SELECT t.oid IS NOT NULL AS present, coalesce(has_table_privilege(t.oid, 'SELECT'), false) AS readable
FROM to_regclass('payverify_run_counts') AS t(oid)

-- name: reconcile_has_run
-- Whether reconcile ever ran here (then its indexes are in use).
SELECT EXISTS (SELECT 1 FROM payverify_run_counts WHERE command = 'reconcile') AS ran

-- ---- db grants (db/grants.py) ----------------------------------------------------------------------

-- name: grants_context
-- The database, the site's schema, and whether the role to grant to exists.
SELECT current_database()::text AS database, current_schema()::text AS site_schema,
       EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(role)s) AS role_exists

-- name: grants_own_tables
-- payverify's own tables in its schema.
SELECT c.relname::text AS name FROM pg_class c
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
  AND c.relkind IN ('r', 'p') AND c.relname LIKE 'payverify\_%%'
ORDER BY c.relname

-- name: grants_sequences
-- The sequences the defaults of these tables (and of the relations behind views) take ids from.
WITH RECURSIVE behind(oid) AS (
    SELECT c.oid FROM pg_class c
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
      AND c.relname = ANY(%(tables)s)
    UNION
    SELECT dep.refobjid FROM behind
    JOIN pg_rewrite r ON r.ev_class = behind.oid AND r.rulename = '_RETURN'
    JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
                      AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid <> behind.oid)
SELECT DISTINCT n.nspname::text AS schema, s.relname::text AS name, s.oid::bigint AS oid
FROM behind
JOIN pg_attrdef ad ON ad.adrelid = behind.oid
JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                AND d.refclassid = 'pg_class'::regclass
JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
ORDER BY 1, 2

-- name: grants_invoker_views
-- Of these site tables, the views with security_invoker set.
SELECT c.relname::text AS name FROM pg_class c
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %(schema)s)
  AND c.relname = ANY(%(tables)s) AND c.relkind = 'v'
  AND EXISTS (SELECT 1 FROM unnest(c.reloptions) AS o(opt)
              WHERE lower(split_part(opt, '=', 1)) = 'security_invoker'
                AND lower(split_part(opt, '=', 2)) IN ('true', 'on', '1', 'yes'))
ORDER BY 1
