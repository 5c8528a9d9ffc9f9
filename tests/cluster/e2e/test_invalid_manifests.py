"""Bad manifests are refused at ``kubectl apply`` with a message that says what to fix.

Each file in ``invalid/`` starts with ``# expect: <text>``, the part of the apiserver's
answer a user must see. Schemas and CEL rules do this work: no operator needs to run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kube import Kube

pytestmark = pytest.mark.cluster
CORPUS = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 10


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_refused_with_a_useful_message(path: Path, kube: Kube, crds: list[str]) -> None:
    text = path.read_text()
    expected = text.splitlines()[0].removeprefix("# expect: ").strip()
    out = kube.kubectl("apply", "-f", "-", stdin=text, check=False)
    assert "created" not in out, out
    assert expected in out, out
    kind = "sendgridconnection" if "kind: SendGridConnection" in text else "segmentexport"
    assert "NotFound" in kube.kubectl("get", f"{kind}/bad", check=False)
