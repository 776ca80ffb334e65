"""Which extra ticket columns payverify can and cannot fill (the rule alone; the database side is in
tests/integration/test_site_contract.py)."""

from __future__ import annotations

from payverify.db.contract import unfillable_ticket_columns


def test_unfillable_ticket_columns_rules():
    """NOT NULL without a default and not written: a problem; a default, identity, nullable or written: fine."""
    def col(name, *, nullable="NO", default=None, identity="NO", generated="NEVER", used=True, table="t"):
        return {"column_name": name, "is_nullable": nullable, "column_default": default, "is_identity": identity,
                "is_generated": generated, "used": used, "table_name": table}

    table = [col("id", identity="YES"), col("code"), col("created_at"), col("seat"), col("note", nullable="YES"),
             col("kind", default="'ga'::text"), col("total", generated="ALWAYS")]
    assert unfillable_ticket_columns(table, []) == ["tickets_ticket.seat"]
    view = [col("id", nullable="YES"), col("code", nullable="YES"), col("gate", nullable="YES"),
            col("row", nullable="YES", default="'A'::text")]
    base = [col("id", identity="YES", table="s.t"), col("door_code", table="s.t"),  # renamed by the view: mapped
            col("seat", used=False, table="s.t"), col("gate", table="s.t"), col("row", table="s.t")]
    assert unfillable_ticket_columns(view, base) == [
        "s.t.seat (behind the view tickets_ticket)", "s.t.gate (behind the view tickets_ticket)"]
