"""Every command's flags (issue 17, "CLI consistency"): one name per concept, help text on every flag, no
"(default: None)" on flags that have no default, casing as a --lowercase/--cased pair. The parsers are the commands'
own: each console script's main runs until it parses, where the parser is taken and inspected."""

import argparse
import importlib
import re
import tomllib

import pytest

from tests.conftest import REPO

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
# Names other commands use for the same concept: never a command's primary spelling.
SYNONYMS = {"--seq_len", "--max_len", "--max_length", "--uncased", "--do_lower_case", "--num_workers",
            "--worker_count", "--nproc", "--out", "--output_dir", "--work_dir", "--model_dir", "--config_file"}
ALIASES = {"--dry-run", "--no-queued", "--seq_len"}  # kept for old command lines, after the primary spelling


class _Parsed(BaseException):
    """Raised at the first parse, carrying the parser (BaseException: commands catch Exception)."""

    def __init__(self, parser):
        self.parser = parser


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _parser_of(entry_point, monkeypatch):
    module_name, function = entry_point.split(":")
    main = getattr(importlib.import_module(module_name), function)

    def capture(self, *args, **kwargs):
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(_Parsed) as parsed:
        main(["--workdir", "unused"])
    return parsed.value.parser


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_flag_is_documented_and_named_as_elsewhere(script, monkeypatch):
    for parser in _parsers(_parser_of(SCRIPTS[script], monkeypatch)):
        options = {option for action in parser._actions for option in action.option_strings}
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            primary = next(o for o in action.option_strings if o.startswith("--")) if any(
                o.startswith("--") for o in action.option_strings) else action.option_strings[0]
            assert action.help and action.help.strip(), f"{script} {primary}: no help text"
            assert primary not in SYNONYMS, f"{script}: {primary} is spelled differently in the other commands"
            for option in action.option_strings:
                if option.startswith("--") and option not in ALIASES:
                    assert re.fullmatch(r"--[a-z0-9]+(_[a-z0-9]+)*", option), f"{script}: {option}: use underscores"
        help_text = parser.format_help()
        assert "(default: None)" not in help_text, f"{script}: a flag without a default shows one"
        for action in parser._actions:
            if action.required and action.option_strings:
                shown = parser._get_formatter()._get_help_string(action) or ""
                assert "%(default)" not in shown, f"{script} {action.option_strings[0]}: required, shows a default"
        if "--lowercase" in options:
            assert "--cased" in options, f"{script}: --lowercase without its --cased"
