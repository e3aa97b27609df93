rule batches:
    output:
        report(
            directory(artifact("batches")),
            patterns=["language_pairs.{ext}"],
            caption="../report/batches.rst",
            category="Batch statistics",
            subcategory="{trainset}",
            labels={"strategy": "{strategy}", "seed": "{seed}"},
        ),
    input:
        package("batches"),
        pairs=artifact("pairs", "pairs.parquet"),
        qrels=artifact("pairs", "qrels.parquet"),
        manifest=artifact_manifest(artifact("pairs")),
    params:
        plan=stage_params("batches"),
        pairs_dir=lambda w, input: parent_dir(input.pairs),
    threads: job_threads("batches")
    resources:
        **job_resources("batches"),
    log:
        log_file("batches", "{trainset}/{strategy}/s{seed}"),
    benchmark:
        benchmark_file("batches", "{trainset}/{strategy}/s{seed}")
    conda:
        ENV
    shell:
        stage_command("batches", "plan", pairs="{params.pairs_dir}")


rule image_text_batches:
    output:
        report(
            directory(artifact("image_text_batches")),
            patterns=["batch_types.{ext}"],
            caption="../report/batches.rst",
            category="Batch statistics",
            subcategory="image-text {corpus}",
            labels={"strategy": "{strategy}", "seed": "{seed}"},
        ),
    input:
        package("image-text-batches"),
        split=corpus_split("train"),
    params:
        plan=stage_params("image-text-batches"),
        corpus=lambda w, input: parent_dir(input.split[0]),
    threads: job_threads("image_text_batches")
    resources:
        **job_resources("image_text_batches"),
    log:
        log_file("image_text_batches", "{corpus}/{strategy}/s{seed}"),
    benchmark:
        benchmark_file("image_text_batches", "{corpus}/{strategy}/s{seed}")
    conda:
        ENV
    shell:
        stage_command("image_text_batches", "plan", corpus="{params.corpus}")
