import json
import os
import re
import shlex
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "workflow"))

# the driver imports only these two light modules (standard library, PyYAML, jsonschema):
# parsing the workflow needs no torch, FAISS or pandas (a login node runs it as it is)
from hybridbatch.config import (IMAGE_SOURCES, descriptor, eval_corpus, image_text_runs, local_paths_win, tower_of,
                               validate_config, variants)
from hybridbatch import stage_params as params_of
from hybridbatch.names import (DUAL_ENCODER, RESULTS, RUN_KEYS, SETTINGS, SPLITS, THREAD_VARIABLES, ZERO_SHOT,
                               ImageTextRun, artifact, benchmark_file, heatmap_name, is_dual_encoder, log_file)
from hybridbatch.report.outputs import (CURVE, IMAGE_TEXT_ALPHA_PLOT, IMAGE_TEXT_PLOTS, IMAGE_TEXT_TRAINING,
                                        VALIDATION_PLOT, curve_tables, image_text_table_stems, per_language_stem,
                                        text_plots, text_table_stems)
from hybridbatch.artifacts.fingerprints import stage_files
from hybridbatch.stages import STAGES, module_of

local_paths_win(config)
validate_config(config)

ENV = "../../envs/hybridbatch.yaml"
IMAGE_CORPORA = sorted(name for name, corpus in config["corpora"].items() if corpus["source"] in IMAGE_SOURCES)
TEXT_CORPORA = sorted(set(config["corpora"]) - set(IMAGE_CORPORA))


# Stage commands run `python -m hybridbatch`: the package from this checkout, with the
# interpreter running Snakemake unless a conda env (--sdm conda) provides its own.
def stage_shell_prefix():
    package_root = shlex.quote(os.path.join(workflow.basedir, "workflow"))
    prefix = f"export PYTHONPATH={package_root}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "  # braces doubled for Snakemake
    if not any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
        prefix += f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH; "
    threads = config["resources"]["default"]["threads"]  # a stage's own: stage_command
    prefix += "".join(f"export {name}={threads}; " for name in THREAD_VARIABLES)
    return prefix


shell.prefix(stage_shell_prefix())


onstart:
    # checks that need the stages' libraries, once, before any job runs
    checked = as_json(config)
    shell("python -m hybridbatch check-config --params {checked:q}")


wildcard_constraints:
    corpus="[A-Za-z0-9][A-Za-z0-9_-]*",
    trainset="[A-Za-z0-9][A-Za-z0-9_-]*",
    strategy="[A-Za-z0-9][A-Za-z0-9_@-]*",
    model="[A-Za-z0-9][A-Za-z0-9_-]*",
    variant="[^/]+",
    seed="[0-9]+",
    run="[A-Za-z0-9][A-Za-z0-9_.@-]*",
    split="train|test",
    name="[A-Za-z0-9][A-Za-z0-9_.-]*",


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(map(re.escape, names)) or "(?!)"


def rule_resources(rule):
    """config `resources.<rule>` over `resources.default`."""
    return {**config["resources"]["default"], **config["resources"].get(rule, {})}


def job_resources(rule):
    """What a rule's jobs declare to the scheduler: gpu, mem_mb and runtime (minutes)."""
    return {name: value for name, value in rule_resources(rule).items() if name != "threads"}


def job_threads(rule):
    return rule_resources(rule)["threads"]


def stage_command(rule, params, **paths):
    """A rule's shell command, built from its stage's declaration (hybridbatch.stages):
    `python -m hybridbatch <stage>` with the rule's configured threads (not those Snakemake may
    lower to --cores: results do not depend on --cores), `--params {params.<params>:q}`, and a
    flag per declared path argument, in order: `{input.<name>}`, `{output}` for `out`, or the
    placeholder `paths` gives; an optional one not given is `{params.<name>}` (optional_path:
    its flag or nothing). The log takes stdout and stderr."""
    stage = rule.replace("_", "-")
    declared = STAGES[stage].paths
    unknown = sorted(set(paths) - {path.name for path in declared})
    if unknown:
        raise ValueError(f"{rule!r} passes {unknown}, which stage {stage} does not declare (hybridbatch/stages.py)")
    parts = [f"python -m hybridbatch {stage} --threads {job_threads(rule)} --params {{params.{params}:q}}"]
    for path in declared:
        if path.optional and path.name not in paths:
            parts.append(f"{{params.{path.name}}}")
        else:
            default = "{output}" if path.name == "out" else f"{{input.{path.name}}}"
            parts.append(f"--{path.name.replace('_', '-')} {paths.get(path.name, default)}")
    return " ".join(parts) + " > {log} 2>&1"


def package(command):
    """The package source files a stage or tool runs (hybridbatch.stages, artifacts.fingerprints):
    local files, also when results live in remote storage (--default-storage-provider)."""
    return [local(path) for path in stage_files(module_of(command))]


# A stage checks each input artifact against its manifest.json: a rule declares the manifest
# of every artifact made of files (not a directory output), so that a storage plugin, which
# fetches only declared inputs and uploads only declared outputs, carries it along.
def artifact_manifest(directory):
    return os.path.join(directory, "manifest.json")


def corpus_split(split, corpus="{corpus}"):
    """Every file of a corpus split, which stages read as a directory, the corpus's groups
    (each item's near-duplicate group and split) and manifest (`corpus` a name or the wildcard)."""
    def files(wildcards):
        name = corpus.format(**wildcards)
        candidates = "images" if name in IMAGE_CORPORA else "passages"
        root = artifact("corpus", corpus=name)
        split_files = [f"{root}/{split}/{table}.parquet" for table in ("queries", candidates, "qrels")]
        return split_files + [f"{root}/groups.parquet", artifact_manifest(root)]
    return files


def as_json(value):
    return json.dumps(value, sort_keys=True)


def stage_params(stage):
    """A rule's params entry for its stage: the stage's params for the job's wildcards, as
    JSON (hybridbatch.stage_params builds them)."""
    return lambda wildcards: as_json(params_of.build(stage, config, wildcards))


def evaluated_runs():
    """(model, variant, corpus) of every evaluation in the grid."""
    return [
        (model, variant, corpus)
        for model in config["experiment"]["models"]
        for variant in variants(config)
        for corpus in config["experiment"]["eval_corpora"]
    ]


METRIC_FILES = ["per_query.parquet", "by_language.parquet", "summary.csv"]  # what the evaluate stages write


def metrics_files(dirs):
    """The metrics files of every evaluated run and their manifests (the tables stage's inputs)."""
    return [f"{d}/{name}" for d in dirs for name in METRIC_FILES + ["manifest.json"]]


def unique_parents(paths):
    """The directories of `paths` (as the job sees them: local copies under remote storage), in order."""
    return list(dict.fromkeys(os.path.dirname(str(path)) for path in paths))


def metrics_dirs():
    return [artifact("metrics", model=model, variant=variant.name, corpus=corpus) for model, variant, corpus in evaluated_runs()]


def heatmaps():
    return [
        artifact("plots", heatmap_name(tuple(descriptor(config, corpus, model, variant)[k] for k in RUN_KEYS)))
        for model, variant, corpus in evaluated_runs()
    ]


IMAGE_TEXT = config.get("image_text")


def image_text_metrics_dirs():
    """The evaluated image-text runs (none without an image_text section)."""
    if not IMAGE_TEXT:
        return []
    return [
        artifact("image_text_metrics", corpus=eval_corpus(IMAGE_TEXT), run=run.name) for run in image_text_runs(config)
    ]


def lit_models():
    """The LiT runs' model directories: the tables report what each trained (saved step,
    realised pairs, development Recall@1) and plot their validations."""
    if not IMAGE_TEXT:
        return []
    runs = [run for run in image_text_runs(config) if not run.zero_shot]
    return [artifact("image_text_model", corpus=IMAGE_TEXT["corpus"], run=run.name) for run in runs]


def image_text_run_inputs(wildcards):
    """The model directory an image-text run evaluates and the image features it reads."""
    model = ImageTextRun.parse(wildcards.run).zero_shot
    if model is None:
        model_dir = artifact("image_text_model", corpus=IMAGE_TEXT["corpus"], run=wildcards.run)
        tower = IMAGE_TEXT["image_tower"]
        base = [artifact("model", model=IMAGE_TEXT["text_model"], variant=ZERO_SHOT)]
    else:
        model_dir = artifact("model", model=model, variant=ZERO_SHOT)
        tower = tower_of(config, model, "image_text.zero_shot")
        base = []
    features = artifact("features", tower=tower, corpus=wildcards.corpus)
    states = caption_states_dirs("test", wildcards.corpus) if model is None else []
    return {"model": model_dir, "features": features, "base": base, "states": states}


def caption_states_dirs(split, corpus):
    """The caption states of a corpus split that LiT (train) or its evaluation (test) reads:
    none where they are off, the whole text tower trains or the text model is a dual encoder."""
    training = IMAGE_TEXT["training"]
    whole = training["trainable_text_layers"] == "all" or not training.get("caption_states", True)
    dual = is_dual_encoder(config["models"][IMAGE_TEXT["text_model"]])
    return [] if whole or dual else [artifact("caption_states", corpus=corpus, split=split)]


def optional_path(option, paths):
    """`--option path` for a one-path input, nothing for an empty one."""
    return f"--{option} {paths[0]}" if paths else ""


def base_of_trained(wildcards):
    """A trained model stores what training changed: it loads with the base it started from."""
    return [] if wildcards.variant == ZERO_SHOT else [artifact("model", model=wildcards.model, variant=ZERO_SHOT)]


def tower_model_dir(wildcards):
    """A dual encoder's image tower reads its base model."""
    source = config["image_towers"][wildcards.tower]["source"]
    return [artifact("model", model=source["model"], variant=ZERO_SHOT)] if source["kind"] == DUAL_ENCODER else []


def image_text_tables():
    """The image-text tables and plots the tables stage writes (none without the experiment)."""
    if not IMAGE_TEXT:
        return []
    plots = [IMAGE_TEXT_PLOTS] + ([IMAGE_TEXT_ALPHA_PLOT] if IMAGE_TEXT["strategies"] and IMAGE_TEXT["seeds"] else [])
    plots += [VALIDATION_PLOT] if lit_models() else []
    tables = expand(artifact("tables", "{stem}.{ext}"), stem=image_text_table_stems(eval_corpus(IMAGE_TEXT)),
                    ext=["md", "csv", "tex"])
    tables += expand(artifact("tables", "{stem}.{ext}"), stem=IMAGE_TEXT_TRAINING, ext=["md", "csv"]) if lit_models() else []
    if IMAGE_TEXT.get("curve"):
        tables += [artifact("tables", name) for name in curve_tables()]
        plots.append(CURVE)
    return tables + [artifact("plots", f"{name}.png") for name in plots]


def trainset_corpus(wildcards):
    return corpus_split("train", config["trainsets"][wildcards.trainset]["corpus"])(wildcards)


def base_model_corpus(wildcards):
    """A randomly initialised model trains its tokenizer on a corpus; others need none."""
    source = config["models"][wildcards.model]["source"]
    if source["kind"] != "random":
        return []
    return corpus_split("train", source["corpus"])(wildcards)


def local_model_dir(wildcards):
    """A local model directory ('local', or a dual encoder's `path`), so that replacing it rebuilds the model."""
    source = config["models"][wildcards.model]["source"]
    return [local(source["path"])] if "path" in source else []


def parent_dir(path, levels=1):
    for _ in range(levels):
        path = os.path.dirname(path)
    return path


def passage_shards(wildcards):
    """The shard outputs of a corpus embedded in shards (config embedding.shards); none for one."""
    shards = config["embedding"].get("shards", {}).get(wildcards.corpus, 1)
    if shards == 1:
        return []
    return expand(artifact("embedding_shard"), shard=range(shards),
                  shards=shards, **wildcards)
