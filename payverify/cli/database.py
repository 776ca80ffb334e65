"""`payverify db grants`: the rights payverify needs, for the person who sets up its database role."""

from __future__ import annotations

import click

from payverify.cli.commands import db
from payverify.cli.params import RoleName
from payverify.exitcodes import ExitStatus
from payverify.modes.runtime import start


@db.command()
@click.argument("role", type=RoleName())
@click.pass_obj
def grants(config_file, role) -> int:
    """Print the SQL that gives ROLE exactly the rights payverify needs at run time.

    Column rights on the site's tables (read what payverify reads; update only an order's status,
    paid_at, sumup_transaction_code and updated_at, and an artist's three token columns; insert
    tickets) and row rights on payverify's own tables, with the sequences behind their ids. Names
    come from the database (PAYVERIFY_SITE_SCHEMA, identity or serial ids), so run it against the
    real database, after `payverify db upgrade`, and again after every upgrade. Apply the output as
    a superuser or the tables' owner. Changes nothing itself. `db upgrade` still needs the owner.

    \b
    Example:
      payverify db grants payverify | psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1
    """
    from payverify.modes.schema import grants_for

    found = grants_for(start(config_file), role)
    click.echo(f"-- The rights payverify needs at run time, for role {found.role}; apply as a superuser or the owner.")
    click.echo("-- Run `payverify db grants` again after every `payverify db upgrade`.")
    for line in found.statements:
        click.echo(line)
    return ExitStatus.OK
