"""What every snakemake command pays before its first job: the workflow's imports."""

import subprocess
import sys


def test_the_workflow_reads_its_config_without_torch_or_transformer_lens():
    """Every snakemake command (a dry run, each of the tests' runs) imports what common.smk imports; TransformerLens
    and torch take seconds to import, so none of it may import them (a 27 s dry run came down to 2 s)."""
    code = ("import sys; import mechrepro.config, mechrepro.io, mechrepro.claims, mechrepro.models, mechrepro.models.registry, mechrepro.provenance, "
            "mechrepro.hub; from mechrepro.models.registry import get_spec; get_spec('toy-lm-ci'); "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # ... and the lazy names still resolve
    from mechrepro.models import ModelUnavailableError, load_model
    from mechrepro.models.load import load_model as direct

    assert load_model is direct and issubclass(ModelUnavailableError, Exception)
