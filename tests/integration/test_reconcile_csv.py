"""`payverify reconcile --csv FILE`: the accountant's file. Real processes, the simulator's history.

It holds the takings: created 0600 whatever the umask, never written through a symlink someone put
at FILE, and no cell from SumUp or the site runs as a formula in a spreadsheet."""

from __future__ import annotations

import csv
import os
import stat
from decimal import Decimal

import pytest

from payverify.exitcodes import ExitStatus
from payverify_dev.seed import PLATFORM_MERCHANT


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def reconcile_csv(run_payverify, target):
    return run_payverify("reconcile", "--since", "1d", "--csv", str(target))


def test_the_csv_is_readable_by_its_owner_only_whatever_the_umask(seed, sumup, run_payverify, tmp_path, umask_022):
    sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="TPOSCSV001", amount="3.00", payment_type="POS")
    target = tmp_path / "takings.csv"
    result = reconcile_csv(run_payverify, target)
    assert result.returncode == ExitStatus.OK, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # An older file, readable by all, is replaced by one that is not.
    target.chmod(0o644)
    assert reconcile_csv(run_payverify, target).returncode == ExitStatus.OK
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "TPOSCSV001" in target.read_text()
    assert [p.name for p in tmp_path.iterdir() if "takings" in p.name] == ["takings.csv"]  # no temporary left


def test_a_symlink_at_the_csv_path_is_not_followed(seed, sumup, run_payverify, tmp_path):
    """Someone put a link where the accountant's file goes, to a file of theirs or of payverify's:
    the run refuses it in one line (exit 2) and the file behind the link is untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    link = tmp_path / "takings.csv"
    link.symlink_to(victim)
    result = reconcile_csv(run_payverify, link)
    assert result.returncode == ExitStatus.USAGE
    (line,) = result.stderr.splitlines()
    assert "--csv" in line and "symbolic link" in line
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert link.is_symlink()


def test_no_cell_runs_as_a_formula_and_amounts_stay_numbers(seed, sumup, run_payverify, tmp_path):
    """Cells from SumUp beginning with =, +, -, @ (or a tab or CR) get a leading quote, so a spreadsheet
    shows them as text; the amounts, payverify's own numbers, are written as numbers, minus sign
    and all."""
    hostile = {"=HYPERLINK(\"HTTP://EVIL.INVALID\",\"X\")": "TFORMULA01", "+CMD|' /C CALC'!A0": "TFORMULA02",
               "-2+3": "TFORMULA03", "@SUM(1+1)": "TFORMULA04"}
    for payment_type, code in hostile.items():
        sumup.add_transaction(PLATFORM_MERCHANT, transaction_code=code, amount="4.00", payment_type=payment_type)
    sumup.add_transaction(PLATFORM_MERCHANT, transaction_code="=CODE", amount="-5.00", type="REFUND",
                          status="-SUCCESSFUL")
    target = tmp_path / "takings.csv"
    result = reconcile_csv(run_payverify, target)
    assert result.returncode == ExitStatus.OK, result.stderr
    with target.open(newline="", encoding="utf-8") as fh:
        table = {r["transaction_code"]: r for r in csv.DictReader(fh)}
    for payment_type, code in hostile.items():
        assert table[code]["payment_type"] == "'" + payment_type
    refund = table["'=CODE"]
    assert (refund["amount"], refund["status"]) == ("-5.00", "'-SUCCESSFUL")
    assert Decimal(refund["amount"]) == Decimal("-5.00")
    for row in table.values():
        for column, cell in row.items():
            if column not in ("amount", "refunded_amount"):
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)
