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
        plan=lambda w: as_json(
            {**config["batching"], "alpha": config["strategies"][w.strategy]["alpha"], "seed": int(w.seed)}
        ),
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
        stage_command("batches") + " --params {params.plan:q} --pairs {params.pairs_dir} --out {output} > {log} 2>&1"


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
        plan=lambda w: as_json(
            {
                **IMAGE_TEXT["batching"],
                "steps": IMAGE_TEXT["batching"]["steps"] * IMAGE_TEXT["strategies"][w.strategy].get("step_factor", 1),
                "languages": sorted(IMAGE_TEXT["train_languages"]),
                "strategy": {"weights": normalised_weights(IMAGE_TEXT["strategies"][w.strategy]["weights"])},
                "seed": int(w.seed),
            }
        ),
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
        stage_command("image_text_batches") + " --params {params.plan:q} --corpus {params.corpus} --out {output} > {log} 2>&1"
