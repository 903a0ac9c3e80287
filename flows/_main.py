"""``python -m flows.<name>``: run a flow with its config built from ``--field value`` flags.

Each flag names a field of the flow's pydantic config (``--derive-from 1m`` sets
``derive_from``); the values are validated by the config model itself
(:meth:`pydantic.BaseModel.model_validate`), so the rules are the same as everywhere else. A list
field takes several values (``--symbols SPX GOOGL`` or ``--symbols SPX,GOOGL``, or the flag
repeated); a bool field is set by its flag alone (``--full``) and cleared by ``--no-<field>``.
``--help`` lists the fields. The flow's result is printed as JSON. Exit codes: 0 success, 2 bad
flags or bad input (nothing written), 1 anything else (with its traceback).

Like every ``fks`` command (:func:`flows._server.prepare`), the flow reports to the background
Prefect server of ``fks server start`` when one runs (``PREFECT_API_URL`` in the environment wins);
otherwise Prefect's temporary server starts with FKS's server settings
(:data:`flows._server.SERVER_SETTINGS`) and is ended on SIGTERM and SIGHUP too, and by a
watchdog after a SIGKILL. The flow runs as a command's do (:func:`flows._flowruns.command_flow_runs`:
no heartbeats, tagged with this process, the runs of dead commands marked Crashed). Prefect logs
at its own level (``PREFECT_LOGGING_LEVEL``), except its records of the bad input this module
reports itself.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from config.flows import InputError
from flows._flowruns import command_flow_runs
from flows._logs import drop_reported_failures
from flows._server import prepare

C = TypeVar("C", bound=BaseModel)
R = TypeVar("R")

FlagValue = str | bool | list[str]


def _kinds(annotation: object) -> set[type]:
    """The plain types a field annotation admits (``list[str] | None`` -> {list, NoneType})."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return set().union(*(_kinds(a) for a in get_args(annotation)))
    if origin is not None:
        return {origin} if isinstance(origin, type) else set()
    return {annotation} if isinstance(annotation, type) else set()


def _is_list(field: FieldInfo) -> bool:
    return bool(_kinds(field.annotation) & {list, tuple, set, frozenset})


def _is_bool(field: FieldInfo) -> bool:
    return bool in _kinds(field.annotation)


def parse_flags(argv: Sequence[str], model: type[BaseModel]) -> dict[str, FlagValue]:
    """The ``--field value`` flags of ``argv`` as a dict for ``model.model_validate``.

    Raises:
        InputError: an argument that is not a flag, a flag that names no field, or a flag
            without its value; the message says which.
    """
    fields = model.model_fields
    values: dict[str, FlagValue] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise InputError(f"unexpected argument {arg!r}: give every value after its --flag (see --help)")
        flag, has_inline, inline = arg[2:].partition("=")
        name = flag.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in fields and _is_bool(fields[name[3:]])
        if negated:
            name = name[3:]
        if name not in fields:
            raise InputError(f"unknown flag --{flag}; the flags are: {', '.join(_flag(n) for n in fields)}")
        given = [inline] if has_inline else []
        i += 1
        while not has_inline and i < len(args) and not args[i].startswith("--"):
            given.append(args[i])
            i += 1
        field = fields[name]
        if negated or (not given and _is_bool(field)):
            if given:
                raise InputError(f"--{flag} takes no value")
            values[name] = not negated
        elif not given:
            raise InputError(f"--{flag} needs a value")
        elif _is_list(field):
            previous = values.get(name)
            items = previous if isinstance(previous, list) else []
            values[name] = items + [part for value in given for part in value.split(",") if part]
        elif len(given) > 1:
            raise InputError(f"--{flag} takes one value, got {len(given)}: {' '.join(given)}")
        else:
            values[name] = given[0]
    return values


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def usage(flow: Callable[..., object], model: type[BaseModel], prog: str) -> str:
    """The ``--help`` text: the flow's summary and one line per field of ``model``."""
    doc = (flow.__doc__ or "").strip().splitlines()
    lines = [f"usage: {prog} [--FIELD VALUE ...]", ""]
    if doc:
        lines += [doc[0], ""]
    lines.append(f"Fields of {model.__name__}:")
    for name, field in model.model_fields.items():
        flag = f"{_flag(name)} / --no-{name.replace('_', '-')}" if _is_bool(field) else _flag(name)
        kind = "" if _is_bool(field) else ("VALUE ..." if _is_list(field) else "VALUE")
        text = f" {field.description}" if field.description else ""
        lines.append(f"  {flag:<28} {kind:<10}{text}{_default(field)}")
    return "\n".join(lines)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return " (required)"
    factory = field.default_factory
    if factory is None:
        return f" (default: {field.default!r})"
    first, second = factory(), factory()  # type: ignore[call-arg]
    return f" (default: {first!r})" if first == second else " (default: a new one each run)"


def _prog(flow: Callable[..., object]) -> str:
    module = getattr(flow, "__module__", "") or ""
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else "flows"
    return f"python -m {module}"


def run_from_argv(
    flow: Callable[[C], R], model: type[C], argv: Sequence[str] | None = None, prog: str | None = None
) -> R:
    """Build ``model`` from the ``--field value`` flags of ``argv`` (default ``sys.argv[1:]``), run
    ``flow`` with it and print its result (JSON for a pydantic model).

    Raises:
        SystemExit: 0 after ``--help``; 2 for bad flags, a config the model refuses, or bad input
            the flow raises as :class:`config.flows.InputError`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    name = prog or _prog(flow)
    if "-h" in args or "--help" in args:
        print(usage(flow, model, name))
        raise SystemExit(0)
    try:
        config = model.model_validate(parse_flags(args, model))
    except ValidationError as exc:
        problems = "; ".join(
            (f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: " if e["loc"] else "")
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise _exit(problems) from None
    except InputError as exc:
        raise _exit(str(exc)) from None
    url = prepare()  # as every fks command does: the background server, else a temporary one
    drop_reported_failures(("InputError",))  # said once below, without Prefect's traceback
    try:
        with _api_url(url), command_flow_runs():  # tagged, watched and crash-marked as fks commands' runs
            result = flow(config)
    except InputError as exc:
        raise _exit(str(exc)) from None
    print(result.model_dump_json(indent=2) if isinstance(result, BaseModel) else result)
    return result


@contextmanager
def _api_url(url: str | None) -> Iterator[None]:
    """Prefect's settings with ``url`` (from :func:`prepare`) as its API: the flow's module imported
    Prefect, which read its settings then, before ``prepare`` set ``PREFECT_API_URL``. None: Prefect
    starts its temporary server."""
    if url is None:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def _exit(message: str) -> SystemExit:
    print(f"error: {message}", file=sys.stderr)
    return SystemExit(2)
