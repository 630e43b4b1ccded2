from features import catalog as C
from features.docs import render
from mhp.cli import main


def test_docs_features_md_is_generated_from_the_catalog(tmp_path):
    with open("docs/features.md") as f:
        assert f.read() == render(), "docs/features.md is stale: run `mhp features-doc`"
    out = tmp_path / "f.md"
    assert main(["features-doc", "--out", str(out)]) == 0
    text = out.read_text()
    for f in C.CUSTOMER_FEATURES + C.TUTOR_FEATURES + C.ON_DEMAND:
        assert f"`{f.name}`" in text
    assert len(C.model_features()) >= 150
