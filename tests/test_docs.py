"""The documentation cannot rot: generated pages equal their rendering, the module map equals the
package tree, README's set-up commands are the ones CI runs, and the shell blocks marked runnable
in README.md and docs/*.md are run.

Runnable blocks. A fenced shell block (```sh) directly after a comment ``<!-- docs-test: KIND -->``:

- ``run``: executed as written (bash -e) in an empty temporary folder; ``expect="TEXT"`` in the
  comment: its output must contain TEXT.
- ``run-tiny``: executed as written in a temporary folder in which the paths the pages use for the
  released model and a trained run hold the test suite's tiny ones: ``flores101_mm100_615M/model.pt``
  is the tiny base checkpoint, ``checkpoints/lslo_2-2-8/checkpoint_last.pt`` the session's standard
  tiny LSLo run (conftest's ``lslo_run``); slow.
- ``dry-run``: needs the released model or a GPU, so nothing trains: every ``bash examples/...sh``
  line runs with ``DRY_RUN=1`` (the recipes then only write their commands), every ``lslo-*``,
  ``fairseq-train`` and ``fairseq-generate`` line is parsed by that command's own parser (an unknown
  or malformed option fails). Shell variables stand for placeholders.
- ``ci``: README's set-up commands; ``.ci/run`` must run the test command verbatim and install the
  same torch.

A shell block without such a comment is an illustration and is not run.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<kind>[\w-]+)(?P<attrs>(?:\s+\w+=\"[^\"]*\")*)\s*-->\s*$")
KINDS = ("run", "run-tiny", "dry-run", "ci")


def _render_module():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "scripts" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


# ---- generated pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(render.PAGES))
def test_generated_page_is_current(name):
    page = render.DOCS / name
    assert page.is_file(), f"docs/{name} is missing: write it with `{render.COMMAND}`"
    assert page.read_text(encoding="utf-8") == render.PAGES[name](), (
        f"docs/{name} is stale (the code changed): rewrite it with `{render.COMMAND}` and commit it")


def test_module_map_lists_every_module_once():
    text = (render.DOCS / "module-map.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([\w.]+)` \| `([\w/.]+\.py)` \|", text, re.M)
    tree = render.package_modules()
    names = [name for name, _ in listed]
    twice = sorted({n for n in names if names.count(n) > 1})
    missing = sorted(set(tree) - set(listed))
    gone = sorted(set(listed) - set(tree))
    assert not (twice or missing or gone), (
        f"docs/module-map.md: listed twice {twice}, not listed {missing}, no such module {gone}; "
        f"rewrite it with `{render.COMMAND}`")


def test_options_reference_names_every_console_script_and_lslo_option():
    text = (render.DOCS / "options.md").read_text(encoding="utf-8")
    for script, _ in render.console_scripts():
        assert f"### `{script}`" in text, script
    for _, _, cls in render.plugin_classes():
        for action in render.plugin_lslo_actions(cls):
            assert f"`{action.option_strings[0]}`" in text, action.option_strings


# ---- the site's pages ----------------------------------------------------------------------------


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert re.search(rf":\s*{re.escape(page.name)}\s*$", nav, re.M), f"docs/{page.name} is not in mkdocs.yml's nav"


def test_readme_fits_two_screens():
    assert (ROOT / "README.md").stat().st_size <= 15_000


# ---- runnable blocks -----------------------------------------------------------------------------


class Block(NamedTuple):
    page: str
    line: int
    kind: str
    attrs: dict
    text: str

    @property
    def id(self):
        return f"{self.page}:{self.line}"


def blocks(kinds=KINDS) -> list:
    out = []
    for path in PAGES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            match = MARKER.match(line.strip())
            if not match:
                continue
            fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
            assert fence in ("```sh", "```bash", "```shell"), (
                f"{path.name}:{i + 1}: a docs-test comment must be followed by a ```sh block")
            end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
            kind = match.group("kind")
            assert kind in KINDS, f"{path.name}:{i + 1}: unknown docs-test kind {kind!r} (one of {KINDS})"
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group("attrs")))
            if kind in kinds:
                out.append(Block(path.relative_to(ROOT).as_posix(), i + 1, kind, attrs, "\n".join(lines[i + 2:end])))
    return out


def commands(text: str) -> list:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        if re.match(r"^\s*[A-Za-z_]\w*=\$\(", line):  # NAME=$(command ...): an assignment, never run
            out.append([line.strip().split("=", 1)[0] + "=X"])
            continue
        tokens = shlex.split(line, comments=True)
        if tokens:
            out.append(tokens)
    return out


def _env(**extra) -> dict:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run_block(block: Block, cwd: Path):
    script = "set -euo pipefail\n" + block.text + "\n"
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{block.id}: the block failed (exit {proc.returncode}):\n{block.text}\n{proc.stderr[-3000:]}"
    if "expect" in block.attrs:
        assert block.attrs["expect"] in proc.stdout, f"{block.id}: no {block.attrs['expect']!r} in\n{proc.stdout[-3000:]}"


@pytest.mark.parametrize("block", blocks(("run",)), ids=lambda b: b.id)
def test_run_block(block, tmp_path):
    _run_block(block, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks(("run-tiny",)), ids=lambda b: b.id)
def test_run_tiny_block(block, lslo_run, tiny_base_checkpoint, tmp_path):
    (tmp_path / "flores101_mm100_615M").mkdir()
    (tmp_path / "flores101_mm100_615M" / "model.pt").symlink_to(tiny_base_checkpoint)
    (tmp_path / "checkpoints" / "lslo_2-2-8").mkdir(parents=True)
    (tmp_path / "checkpoints" / "lslo_2-2-8" / "checkpoint_last.pt").symlink_to(lslo_run["ckpt"])
    _run_block(block, tmp_path)


def _parse_fairseq(tool: str, argv: list):
    from fairseq import options

    parser = options.get_training_parser() if tool == "fairseq-train" else options.get_generation_parser()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            options.parse_args_and_arch(parser, input_args=argv)
        except SystemExit as exc:
            raise AssertionError(f"{tool} refuses {shlex.join(argv)}:\n{err.getvalue()[-1500:]}") from exc


def _parse_console_script(name: str, argv: list):
    target = dict(render.console_scripts()).get(name)
    assert target, f"no console script {name} in setup.py"
    parser = importlib.import_module(target.split(":")[0]).build_parser()
    if "--" in argv:  # lslo-score ... -- FAIRSEQ-GENERATE FLAGS: those go to fairseq-generate
        argv, passed = argv[:argv.index("--")], argv[argv.index("--") + 1:]
        _parse_fairseq("fairseq-generate", ["DATA", "--user-dir", "lslo_fairseq",
                                            "--task", "translation_multi_simple_epoch_lslo", *passed])
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"{name} refuses {shlex.join(argv)}:\n{err.getvalue()[-1500:]}") from exc


@pytest.mark.parametrize("block", blocks(("dry-run",)), ids=lambda b: b.id)
def test_dry_run_block(block, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # --user-dir lslo_fairseq and examples/... are relative to the root
    env = _env(DRY_RUN=1, MODEL_DIR=tmp_path / "model", DATA=tmp_path / "data", RUNS=tmp_path / "runs")
    variables = {}
    checked = 0
    for argv in commands(block.text):
        assigned = [t for t in argv if re.match(r"^[A-Za-z_]\w*=", t)]
        if argv[0] == "export" or len(assigned) == len(argv):  # NAME=value lines: placeholders
            for token in argv[1:] if argv[0] == "export" else argv:
                variables[token.split("=", 1)[0]] = "en-fr,fr-en" if "PAIRS" in token else "X"
            continue
        prefix = {}
        while argv and re.match(r"^[A-Za-z_]\w*=", argv[0]):
            name, value = argv.pop(0).split("=", 1)
            prefix[name] = value
        argv = [re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), "X"), t) for t in argv]
        tool = argv[0]
        if tool == "bash" and argv[1].startswith("examples/"):
            proc = subprocess.run(argv, cwd=ROOT, env={**env, **prefix}, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0 and "[dry run]" in proc.stdout, (
                f"{block.id}: {shlex.join(argv)} failed as a dry run:\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
        elif tool in ("fairseq-train", "fairseq-generate"):
            _parse_fairseq(tool, argv[1:])
        elif tool.startswith("lslo-"):
            _parse_console_script(tool, argv[1:])
        else:
            raise AssertionError(f"{block.id}: a dry-run block holds recipes, fairseq-* and lslo-* commands, "
                                 f"not {tool!r}")
        checked += 1
    assert checked, f"{block.id}: nothing to check"


def test_readme_setup_commands_are_what_ci_runs():
    ci_blocks = [b for b in blocks(("ci",)) if b.page == "README.md"]
    assert len(ci_blocks) == 2, "README.md: the install-and-demo and the test command, each marked docs-test: ci"
    install, tests = (b.text.strip() for b in ci_blocks)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines(), f".ci/run must run README's test command verbatim: {tests}"
    pins = re.findall(r"torch==[\w.+]+", install)
    assert pins and all(pin in ci for pin in pins), f"README installs {pins}; .ci/run must install the same"
    assert "lslo-demo" in install


def test_runnable_blocks_exist():
    kinds = {b.kind for b in blocks()}
    assert {"run", "run-tiny", "dry-run", "ci"} <= kinds, kinds


# ---- version, changelog, citation, README links -------------------------------------------------


def test_version_is_one_number_everywhere():
    import lslo_fairseq

    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True)
    newest = re.search(r"^## \[(\d[^\]]*)\]", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M).group(1)
    cff = re.search(r"^version:\s*(\S+)", (ROOT / "CITATION.cff").read_text(encoding="utf-8"), re.M).group(1)
    assert proc.stdout.strip().splitlines()[-1] == lslo_fairseq.__version__ == newest == cff.strip("'\"")


def test_readme_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"^[a-z]+://", target):
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
