"""``scoring-service``: Flask's click CLI with the service's commands (SPEC §10)."""

from __future__ import annotations

import itertools
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from .services.keys import ROLES


def _app_factory():
    from limits.errors import ConfigurationError

    from . import create_app
    from .config import ConfigError
    from .store import StoreError

    # what an operator can mend (a setting, the store, the instance folder) is said in their terms, not as a
    # traceback
    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigurationError as exc:  # the limits library refuses SCORING_RATELIMIT_STORAGE_URI
        raise click.ClickException(f"SCORING_RATELIMIT_STORAGE_URI: {exc}") from None
    except StoreError as exc:
        raise click.ClickException(f"the store cannot be opened: {exc}") from None
    except OSError as exc:  # the instance folder or the SQLite file: no such folder, no permission
        where = f" {exc.filename}" if exc.filename else ""
        raise click.ClickException(f"cannot use{where}: {exc.strerror or exc} "
                                   "(check SCORING_INSTANCE_PATH and SCORING_DATABASE_URL)") from None


@click.group(cls=FlaskGroup, create_app=_app_factory, add_default_commands=False, add_version_option=False)
def main():
    """Scoring service for old residential community renovation (老旧小区改造提质)."""


def register_commands(app) -> None:
    """Commands are also reachable as ``flask --app scoring_service …``."""
    for command in (init, seed, keys, recount, check_attachments, serve, export_round, import_round):
        app.cli.add_command(command)


@click.command()
@with_appcontext
def init():
    """Create the store's tables and indexes (idempotent)."""
    state = current_app.extensions["scoring"]
    state.store.init()
    click.echo(f"store ready: {_store_named()}")


def _store_named() -> str:
    """The store as an operator may see it printed: the SQLite file, or the MongoDB URL without its password."""
    from urllib.parse import urlsplit

    from .app import database_url

    url = database_url(current_app)
    parts = urlsplit(url) if url.startswith(("mongodb://", "mongodb+srv://")) else None
    if parts is None or parts.password is None:
        return url
    return url.replace(f"{parts.username}:{parts.password}@", f"{parts.username}:***@", 1)


#: rubrics seeded together with a programme's own (SPEC §15: its aftercare rounds use shenyang-aftercare)
SHIPPED_BESIDE = {"shenyang-2018": ("shenyang-aftercare",)}


@click.command()
@click.argument("name", type=click.Choice(["shenyang-2018"]))
@click.option("--demo", is_flag=True,
              help="also create 120 communities, inspections, survey responses, milestones and funding, publish "
                   "the 2018 results and add the open 2019 aftercare round with its surveys and inspections")
@with_appcontext
def seed(name, demo):
    """Load the 2018 rubric, districts and round (and demo data)."""
    from .services.errors import ServiceError
    from .services.rubrics import store_rubric
    from .seeding.demo import demo_communities, seed_aftercare, seed_demo, seed_milestones
    from .seeding.funding import seed_funding
    from .seeding.rectifications import seed_rectifications
    from .seeding.reference import SHENYANG_2018_DISTRICTS, SHENYANG_2018_ROUND, SHENYANG_2019_AFTERCARE_ROUND
    from .services.results import publish
    from .store import Outcome
    from .domain.rubric_schema import RubricSchema, load_rubric_file

    state = current_app.extensions["scoring"]
    store = state.store
    for rubric_id in (name, *SHIPPED_BESIDE.get(name, ())):  # the aftercare rubric of SPEC §15 comes with it
        rubric_path = Path(current_app.config["RUBRICS_DIR"]) / f"{rubric_id}.json"
        try:
            outcome, _ = store_rubric(state, RubricSchema().load(load_rubric_file(rubric_path).body))
        except ServiceError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"rubric {rubric_id}: {outcome.value}")
    for district_id, name_zh, name_en, _ in SHENYANG_2018_DISTRICTS:
        store.put_district({"district_id": district_id, "name_zh": name_zh, "name_en": name_en})
    round_data = {
        **SHENYANG_2018_ROUND,
        "opens_at": datetime.fromisoformat(SHENYANG_2018_ROUND["opens_at"]),
        "closes_at": datetime.fromisoformat(SHENYANG_2018_ROUND["closes_at"]),
        "quotas": {d: q for d, _, _, q in SHENYANG_2018_DISTRICTS},
    }
    record = _seed_round(state, round_data)
    if not demo:
        return
    import numpy as np

    round_id = record["round_id"]
    communities = demo_communities(np.random.default_rng(2018))
    if store.count_responses(round_id, include_voided=True):
        click.echo("demo surveys and inspections already present; nothing added")
    else:
        store.put_communities(communities)
        counts = seed_demo(state, store.get_round(round_id), state.rubric(record["rubric_id"]), communities)
        click.echo(f"demo: {len(communities)} communities, {counts['inspections']} inspections, "
                   f"{counts['responses']} survey responses")
    not_demo = any((store.get_community(c["community_id"]) or {}).get("name_zh") != c["name_zh"]
                   for c in communities)
    if store.current_milestones(round_id):
        click.echo("demo milestones already present; nothing added")
    elif not_demo:
        click.echo("the round's communities are not the demo's; no demo milestones added")
    else:
        counts = seed_milestones(state, round_id, communities)
        click.echo(f"demo milestones: {counts['created']} records of {len(communities)} communities")
    if store.current_funding(round_id):
        click.echo("demo funding already present; nothing added")
    elif not_demo:
        click.echo("the round's communities are not the demo's; no demo funding added")
    else:
        counts = seed_funding(state, round_id, communities)
        click.echo(f"demo funding: {counts['communities']} communities, {counts['versions']} funding versions, "
                   f"{counts['disbursements']} disbursements")
    if not_demo:
        return
    # the districts answer the failed checks and the agencies re-inspect (SPEC §13), before publishing
    if store.rectification_responses(round_id):
        click.echo("demo rectifications already present; nothing added")
    elif store.get_round(round_id)["status"] != "open":
        click.echo(f"round {round_id} is no longer open; no demo rectifications added")
    else:
        counts = seed_rectifications(state, round_id, communities)
        click.echo(f"demo rectifications: {counts['items']} items, {counts['responses']} answers, "
                   f"{counts['re_inspections']} re-inspections")
    # the 2018 results are published, and a year later the same communities are evaluated again (SPEC §15)
    outcome = publish(state, round_id)
    click.echo(f"round {round_id}: " + ("published" if outcome is Outcome.CHANGED else "already published"))
    care_data = {**SHENYANG_2019_AFTERCARE_ROUND,
                 **{k: datetime.fromisoformat(SHENYANG_2019_AFTERCARE_ROUND[k]) for k in ("opens_at", "closes_at")}}
    care = _seed_round(state, care_data)
    if store.count_responses(care["round_id"], include_voided=True):
        click.echo("demo aftercare surveys and inspections already present; nothing added")
    else:
        counts = seed_aftercare(state, care, state.rubric(care["rubric_id"]), round_id, communities)
        click.echo(f"demo aftercare: {counts['inspections']} inspections, {counts['responses']} survey responses")


def _seed_round(state, data: dict) -> dict:
    """Create a round ``seed`` ships (an identical one already there is fine) and say so; else a clear error."""
    from .services.errors import Conflict, ServiceError
    from .services.rounds import create_round

    try:
        outcome, record = create_round(state, data)
    except Conflict:
        raise click.ClickException(_round_conflict(state.store.get_round(data["round_id"]), data)) from None
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"round {record['round_id']}: {outcome.value}")
    return record


def _round_conflict(existing: dict | None, wanted: dict) -> str:
    """What to do when the round to seed exists with other content (e.g. seeded by an older build)."""
    from .domain.milestones import stored_round_fields
    from .domain.timeutil import to_stored

    round_id = wanted["round_id"]
    expected = {**{k: v for k, v in wanted.items() if k not in ("opens_at", "closes_at")},
                **stored_round_fields(wanted),
                "opens_at": to_stored(wanted["opens_at"]), "closes_at": to_stored(wanted["closes_at"])}
    differing = sorted(k for k, v in expected.items() if (existing or {}).get(k) != v)
    differing += sorted(k for k in stored_round_fields(existing or {}) if k not in expected)
    where = _store_named()
    return (f"round {round_id!r} already exists in this store with other content"
            + (f" (differs in: {', '.join(differing)})" if differing else "")
            + ", probably seeded by an older build; nothing was changed. To load this build's round, "
            f"re-initialise the instance (a new SCORING_INSTANCE_PATH, or remove the store at {where}; with "
            "MongoDB a new database in SCORING_DATABASE_URL), then run 'scoring-service init' and "
            "'scoring-service seed shenyang-2018 --demo' again; or keep this store and create the round "
            "you need under another round id (POST /api/v1/rounds).")


#: the option of ``keys create`` that gives each field of the key
KEY_OPTIONS = {"role": "--role", "name": "--name", "agency_id": "--agency", "community_id": "--community",
               "district_id": "--district"}


@click.group()
def keys():
    """Manage API keys."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", required=True)
@click.option("--agency", "agency_id", default=None)
@click.option("--community", "community_id", default=None)
@click.option("--district", "district_id", default=None, help="the district of a district key")
@with_appcontext
def keys_create(role, name, agency_id, community_id, district_id):
    """Create a key; the token is printed once, as the last line."""
    from marshmallow import ValidationError

    from .api.keys import KeyCreateSchema
    from .services.errors import ServiceError
    from .services.keys import create_key

    try:
        data = KeyCreateSchema().load({k: v for k, v in {"role": role, "name": name, "agency_id": agency_id,
                                                         "community_id": community_id,
                                                         "district_id": district_id}.items() if v is not None})
        record, token = create_key(current_app.extensions["scoring"], data["role"], data["name"],
                                   data.get("agency_id"), data.get("community_id"), data.get("district_id"))
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    except ValidationError as exc:  # named by this command's options, not the API's fields
        raise click.ClickException("; ".join(f"{KEY_OPTIONS.get(field, field)}: {' '.join(map(str, problems))}"
                                             for field, problems in exc.messages.items())) from None
    click.echo(f"key_id: {record['key_id']} role: {record['role']}", err=True)
    click.echo(token)


@click.command()
@click.option("--round", "round_id", default=None, help="only this round")
@click.option("--dry-run", is_flag=True, help="report differences without fixing them")
@with_appcontext
def recount(round_id, dry_run):
    """Rebuild kept survey statistics from raw responses and report any difference."""
    state = current_app.extensions["scoring"]
    rounds = [state.store.get_round(round_id)] if round_id else state.store.list_rounds()
    total = 0
    for record in rounds:
        if record is None:
            raise click.ClickException(f"unknown round {round_id!r}")
        rubric = state.rubric(record["rubric_id"])
        differences = state.store.recount(record["round_id"], len(rubric.item_codes), fix=not dry_run)
        total += len(differences)
        for difference in differences:
            click.echo(json.dumps({"round_id": record["round_id"], **difference}, ensure_ascii=False))
        click.echo(f"round {record['round_id']}: {len(differences)} differences"
                   + ("" if dry_run or not differences else " (fixed)"))
    sys.exit(1 if total and dry_run else 0)


@click.command("check-attachments")
@click.option("--round", "round_id", default=None, help="only this round")
@with_appcontext
def check_attachments(round_id):
    """Check that every attachment a round's records name has its bytes (with that SHA-256) and thumbnail."""
    from .services.attachments import check_round_files

    store = current_app.extensions["scoring"].store
    rounds = [store.get_round(round_id)] if round_id else store.list_rounds()
    total = 0
    for record in rounds:
        if record is None:
            raise click.ClickException(f"unknown round {round_id!r}")
        named = {ref["sha256"] for ref in store.round_attachment_refs(record["round_id"])}
        problems = check_round_files(store, record["round_id"])
        total += len(problems)
        for problem in problems:
            click.echo(json.dumps(problem, ensure_ascii=False))
        click.echo(f"round {record['round_id']}: {len(named)} attachments named, {len(problems)} problems")
    sys.exit(1 if total else 0)


@click.command("export-round")
@click.argument("round_id")
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), required=True)
@with_appcontext
def export_round(round_id, out):
    """Back up a round (raw submissions, every version, funding ledger, survey links, audit) as JSON Lines."""
    from .ops.backup import RestoreError, export_round as export, key_check, sealed, write_jsonl

    state = current_app.extensions["scoring"]
    # written beside --out and renamed once whole: a refused or interrupted export leaves no file that
    # looks like a backup (nor replaces a good one)
    partial = f"{out}.partial"
    try:
        # 0600 like the SQLite file: the backup holds household hashes, the audit trail and evidence photos
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
            n = write_jsonl(sealed(export(state.store, round_id), key_check(state.secret_key)), fh) - 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, out)
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # no such folder, no permission, disk full: the operator's message, not a trace
        raise click.ClickException(f"cannot write the backup {out}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    click.echo(f"exported {n} records of round {round_id} to {out}")


@click.command("import-round")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--other-secret-key", is_flag=True,
              help="restore a backup made with another SCORING_SECRET_KEY (repeated households are then not "
                   "refused, nor a link's hourly cap of a client address kept)")
@with_appcontext
def import_round(path, other_secret_key):
    """Restore a round from ``export-round`` output into a store that lacks it."""
    from .ops.backup import RestoreError, check_backup_file, import_round as restore, key_check

    state = current_app.extensions["scoring"]
    try:
        # a malformed, cut or foreign-keyed backup is refused before anything is restored
        lines = check_backup_file(path, None if other_secret_key else key_check(state.secret_key))
        with open(path, encoding="utf-8") as fh:
            counts = restore(state.store, fh if lines is None else itertools.islice(fh, lines))
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read the backup {path}: {exc.strerror or exc}") from None
    click.echo("restored: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    _note_missing_baselines(state.store, path)


def _note_missing_baselines(store, path: str) -> None:
    """An aftercare round's live results compare each community with the published acceptance round of its
    renovation year (SPEC §15), which is another round's backup: say so when the store lacks it."""
    from .domain import rounds as kinds

    with open(path, encoding="utf-8") as fh:
        round_id = json.loads(next(line for line in fh if line.strip()))["data"]["round_id"]  # the header
    restored = store.get_round(round_id)
    if restored is None or not kinds.is_aftercare(restored):
        return
    accepted = {int(r["year"]) for r in store.list_rounds() if r["status"] == "published" and not kinds.is_aftercare(r)}
    missing = [year for year in kinds.covered_years(restored) if year not in accepted]
    if missing:
        click.echo(f"note: aftercare round {round_id} compares each community with the published acceptance round "
                   f"of its renovation year, and this store has none of {', '.join(map(str, missing))}: restore "
                   "that round too (before or after), else its live results have no baseline nor change", err=True)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="SCORING_HOST", show_envvar=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="SCORING_PORT",
              show_envvar=True)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), envvar="SCORING_WORKERS",
              show_envvar=True)
def serve(host, port, workers):
    """Serve with gunicorn, as in production (threads per worker: SCORING_THREADS, default 8)."""
    from gunicorn.errors import HaltServer

    from .config import ConfigError
    from .ops.server import serve as run

    try:
        run(host=host, port=port, workers=workers)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except HaltServer as exc:  # a worker could not build the app (e.g. the store unreachable): gunicorn logged why
        click.echo(f"Error: the server stopped: {exc.reason} (the worker's error is in the log above)", err=True)
        sys.exit(exc.exit_status)


# On the group itself, so that ``serve`` runs without building an app in the
# gunicorn master (each worker builds its own after the fork).
for _command in (init, seed, keys, recount, check_attachments, serve, export_round, import_round):
    main.add_command(_command)

if __name__ == "__main__":  # ``python -m scoring_service.cli``
    main()
