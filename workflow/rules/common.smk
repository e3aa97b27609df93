import json
import os
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))

from hybridbatch.config import Variant, descriptor, validate_config, variants
from hybridbatch.sources import source_files

validate_config(config)

ENV = "../../envs/hybridbatch.yaml"
# Stage commands run `python -m hybridbatch`: the package from this checkout, and the
# interpreter running Snakemake unless a conda env (--sdm conda) puts its own first.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [os.path.join(workflow.basedir, "workflow"), os.environ.get("PYTHONPATH")])
)
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
HYBRIDBATCH = "python -m hybridbatch"


wildcard_constraints:
    corpus="[A-Za-z0-9][A-Za-z0-9_-]*",
    trainset="[A-Za-z0-9][A-Za-z0-9_-]*",
    strategy="[A-Za-z0-9][A-Za-z0-9_-]*",
    model="[A-Za-z0-9][A-Za-z0-9_-]*",
    variant="[^/]+",
    seed="[0-9]+",
    split="train|test",


def package(module):
    """The package source files a stage runs (its module and what that imports)."""
    return source_files("__main__", module)


def as_json(value):
    return json.dumps(value, sort_keys=True)


def corpus_split(corpus, split):
    return f"results/corpora/{corpus}/{split}"


def model_dir(model, variant):
    return f"results/models/{model}/{variant}"


def all_summaries():
    return [
        f"results/metrics/{model}/{variant.name}/{corpus}/summary.csv"
        for model in config["experiment"]["models"]
        for variant in variants(config)
        for corpus in config["experiment"]["eval_corpora"]
    ]
