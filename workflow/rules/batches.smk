rule batches:
    output:
        report(
            directory("results/batches/{trainset}/{strategy}/s{seed}"),
            patterns=["language_pairs.{ext}"],
            caption="../report/batches.rst",
            category="Batch statistics",
            subcategory="{trainset}",
            labels={"strategy": "{strategy}", "seed": "{seed}"},
        ),
    input:
        package("batches"),
        pairs="results/train/{trainset}/pairs.parquet",
        qrels="results/train/{trainset}/qrels.parquet",
        manifest=artifact_manifest("results/train/{trainset}"),
    params:
        plan=lambda w: as_json(
            {**config["batching"], "alpha": config["strategies"][w.strategy]["alpha"], "seed": int(w.seed)}
        ),
        pairs_dir=lambda w, input: parent_dir(input.pairs),
    threads: job_threads("batches")
    resources:
        **job_resources("batches"),
    log:
        "results/logs/batches/{trainset}/{strategy}/s{seed}.log",
    benchmark:
        "results/benchmarks/batches/{trainset}/{strategy}/s{seed}.tsv"
    conda:
        ENV
    shell:
        stage_command("batches") + " --params {params.plan:q} --pairs {params.pairs_dir} --out {output} > {log} 2>&1"


rule image_text_batches:
    output:
        report(
            directory("results/image_text/batches/{corpus}/{strategy}/s{seed}"),
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
        "results/logs/image_text_batches/{corpus}/{strategy}/s{seed}.log",
    benchmark:
        "results/benchmarks/image_text_batches/{corpus}/{strategy}/s{seed}.tsv"
    conda:
        ENV
    shell:
        stage_command("image_text_batches") + " --params {params.plan:q} --corpus {params.corpus} --out {output} > {log} 2>&1"
