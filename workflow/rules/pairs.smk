rule pairs:
    output:
        pairs=artifact("pairs", "pairs.parquet"),
        qrels=artifact("pairs", "qrels.parquet"),
        manifest=artifact_manifest(artifact("pairs")),
    input:
        package("pairs"),
        corpus=trainset_corpus,
    params:
        trainset=stage_params("pairs"),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
        out=lambda w, output: parent_dir(output.pairs),
    threads: job_threads("pairs")
    resources:
        **job_resources("pairs"),
    log:
        log_file("pairs", "{trainset}"),
    benchmark:
        benchmark_file("pairs", "{trainset}")
    conda:
        ENV
    shell:
        stage_command("pairs", "trainset", corpus="{params.corpus}", out="{params.out}")
