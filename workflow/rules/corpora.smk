rule download:
    output:
        directory(artifact("raw")),
    input:
        package("download"),
    params:
        corpus=stage_params("download"),
    threads: job_threads("download")
    resources:
        **job_resources("download"),
    log:
        log_file("download", "{corpus}"),
    benchmark:
        benchmark_file("download", "{corpus}")
    conda:
        ENV
    shell:
        stage_command("download", "corpus")


rule prepare:
    output:
        expand(artifact("corpus", "{split}/{name}.parquet"), split=SPLITS, name=["queries", "passages", "qrels"], allow_missing=True),
        groups=artifact("corpus", "groups.parquet"),
        manifest=artifact_manifest(artifact("corpus")),
    input:
        package("prepare"),
        raw=artifact("raw"),
    wildcard_constraints:
        corpus=one_of(TEXT_CORPORA),
    params:
        corpus=stage_params("prepare"),
        out=lambda w, output: parent_dir(output[0], 2),
    threads: job_threads("prepare")
    resources:
        **job_resources("prepare"),
    log:
        log_file("prepare", "{corpus}"),
    benchmark:
        benchmark_file("prepare", "{corpus}")
    conda:
        ENV
    shell:
        stage_command("prepare", "corpus", out="{params.out}")


# An image-text corpus: captions are the queries, images the candidates (same stage).
use rule prepare as prepare_images with:
    output:
        expand(artifact("corpus", "{split}/{name}.parquet"), split=SPLITS, name=["queries", "images", "qrels"], allow_missing=True),
        groups=artifact("corpus", "groups.parquet"),
        manifest=artifact_manifest(artifact("corpus")),
    wildcard_constraints:
        corpus=one_of(IMAGE_CORPORA),
