"""mechrepro: reproducible replications of mechanistic-interpretability papers.

Library code only: nothing here knows about Snakemake. The workflow's thin scripts
(`workflow/scripts/`) call into these modules.
"""

__version__ = "0.1.0"
