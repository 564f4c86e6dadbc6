"""Check that the relative links of Markdown files resolve (``make docs`` runs it on the README).

Every ``[text](target)`` and ``![alt](target)`` whose target is not a URL (``http:``,
``https:``, ``mailto:``) or a pure anchor must name a file or folder that exists, relative
to the Markdown file. Anchors (``file.md#section``) are not checked. Links inside fenced
code blocks and inline code are ignored. Exits 1 listing every broken link.

    python docs/check_links.py README.md CONTRIBUTING.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = ("http://", "https://", "mailto:", "#")


def broken_links(path: Path) -> list[str]:
    """The relative link targets in ``path`` that do not exist."""
    text = _INLINE_CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    broken = []
    for target in _LINK.findall(text):
        if target.startswith(_EXTERNAL):
            continue
        file_part = target.split("#", 1)[0]
        if file_part and not (path.parent / file_part).exists():
            broken.append(target)
    return broken


def main(argv: list[str]) -> int:
    failed = False
    for name in argv or ["README.md"]:
        path = Path(name)
        links = broken_links(path)
        for target in links:
            print(f"{path}: broken link: {target}", file=sys.stderr)
        failed = failed or bool(links)
        if not links:
            print(f"{path}: every relative link resolves")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
