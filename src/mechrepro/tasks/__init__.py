"""One module per replicated paper: its config, datasets, metrics and analyses, and the paper's
circuit as data. The slug of each module names the paper everywhere in the project."""
