# hybridbatch: hybrid-batch training and LAReQA-style evaluation of multilingual retrievers.
# Stages live in workflow/rules/ (one file each); each calls one function of the
# hybridbatch package (workflow/hybridbatch) through `python -m hybridbatch <stage>`.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/imports.smk"
include: "workflow/rules/corpora.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/caption_states.smk"
include: "workflow/rules/pairs.smk"
include: "workflow/rules/batches.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/audit.smk"


rule all:
    input:
        rules.tables.output,
    default_target: True
