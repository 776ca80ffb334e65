"""What the connected database user may do, against what payverify needs (`doctor`'s rights check).

Missing rights fail (a run would be refused halfway); far more than needed on the site's tables is
a warning: payverify works, but a bug or a stolen password could do much more harm than settling
orders. Rights checked through views stop at the view: a base table's are the view owner's affair.
"""

from __future__ import annotations

from dataclasses import dataclass

from payverify.db.connection import Database
from payverify.db.contract import SITE_COLUMNS, TICKETS
from payverify.db.grants import OWN_RIGHTS, SITE_INSERT, SITE_SELECT, SITE_UPDATE, plan
from payverify.db.queries import catalog


@dataclass(frozen=True)
class Rights:
    username: str
    missing: tuple[str, ...]  # e.g. "UPDATE on artists_artist.sumup_access_token"
    too_much: str | None  # the gravest excess, in words; None when there is none


def audit(db: Database) -> Rights:
    """Compare the user's rights with `db grants`' (payverify's tables must exist: `db upgrade`)."""
    needs = plan(db, "payverify")
    columns = [(table, column, "SELECT") for table, names in SITE_SELECT.items() for column in names]
    columns += [(table, column, "UPDATE") for table, names in SITE_UPDATE.items() for column in names]
    columns += [(table, column, "INSERT") for table, names in SITE_INSERT.items() for column in names]
    own = [(table, right) for table in needs.own_tables for right in OWN_RIGHTS[table]]
    sequences = [seq.oid for seq in needs.site_sequences + needs.own_sequences]
    with db.transaction(catalog()) as tx:
        missing = [f"{r['privilege']} on {r['table_name']}.{r['column_name']}" for r in tx.all(
            "rights_columns", schema=needs.site_schema, tables=[c[0] for c in columns],
            columns=[c[1] for c in columns], privileges=[c[2] for c in columns])]
        missing += [f"{r['privilege']} on {r['table_name']}" for r in tx.all(
            "rights_tables", schema=needs.own_schema, tables=[o[0] for o in own], privileges=[o[1] for o in own])]
        missing += [f"USAGE on sequence {r['sequence_name']}" for r in tx.all("rights_sequences",
                                                                               sequences=sequences)]
        excess = tx.require_one("rights_excess", schema=needs.site_schema, tables=list(SITE_COLUMNS),
                                inserted=TICKETS)
    return Rights(excess["username"], tuple(missing), _too_much(excess))


def _too_much(excess: dict) -> str | None:
    if excess["superuser"]:
        return "is a superuser (it can drop or rewrite anything in the database)"
    if excess["owned"]:
        return f"owns the site's tables ({', '.join(excess['owned'])}): it can drop or alter them"
    if excess["table_wide"]:
        shown = ", ".join(excess["table_wide"][:4]) + (" and more" if len(excess["table_wide"]) > 4 else "")
        return f"has table-wide rights on the site's tables ({shown})"
    return None
