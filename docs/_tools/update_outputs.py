"""Rewrite the ``<!-- output -->`` blocks of documentation pages with what their code prints now.

    python docs/_tools/update_outputs.py docs/guides/specs.md [more pages...]

Each page runs as ``tests/integration/test_docs.py`` runs it (top to bottom in one namespace, in a temporary
folder, ``<!-- skip -->`` blocks left out, ``<!-- raises -->`` blocks printing
``ExceptionName: message``); ``--each`` runs every block on its own, as for the README. Use it
when an error message or a summary changes on purpose, then read the diff (``git diff``)
before committing it: the point of those blocks is that a person checked what they show.
"""

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import test_docs  # noqa: E402  (the parser and the conventions live there)


def printed_by(blocks: list[test_docs.Block], *, each: bool) -> list[str | None]:
    """What every block prints (``None`` for a skipped one)."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    out: list[str | None] = []
    for block in blocks:
        if each:
            namespace = {"__name__": "__main__"}
        if block.skip:
            out.append(None)
            continue
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                exec(compile(block.source, f"line {block.line}", "exec"), namespace)
            except Exception as error:
                if not block.raises:
                    raise
                buffer.write(f"{block.raises}: {error}\n")
        out.append(buffer.getvalue())
    return out


def update(page: Path, *, each: bool) -> bool:
    text = page.read_text()
    outputs = iter(printed_by(test_docs.blocks(page), each=each))
    current: str | None = None
    pieces, last = [], 0
    for fence in test_docs.FENCE.finditer(text):
        before = text[last : fence.start()]
        if fence.group(1) == "python":
            current = next(outputs)
        elif before.strip().endswith("<!-- output -->") and current is not None:
            head = text[
                fence.start() : text.index("\n", fence.start()) + 1
            ]  # ```text title="Output"
            body = "\n".join(line.rstrip() for line in current.rstrip("\n").splitlines())
            pieces += [before, head, body + "\n", "```"]
            last = fence.end()
            continue
        pieces.append(text[last : fence.end()])
        last = fence.end()
    pieces.append(text[last:])
    new = "".join(pieces)
    if new != text:
        page.write_text(new)
    return new != text


def main(argv: list[str]) -> int:
    each = "--each" in argv
    pages = [Path(a).resolve() for a in argv if a != "--each"]
    if not pages:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        os.environ["XDG_CACHE_HOME"] = str(Path(work) / "cache")
        for page in pages:
            print(
                f"{page.relative_to(ROOT)}: {'updated' if update(page, each=each) else 'unchanged'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
