rule pairs:
    output:
        pairs="results/train/{trainset}/pairs.parquet",
        qrels="results/train/{trainset}/qrels.parquet",
        manifest=artifact_manifest("results/train/{trainset}"),
    input:
        package("pairs"),
        corpus=trainset_corpus,
    params:
        trainset=lambda w: as_json(config["trainsets"][w.trainset]),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
        out=lambda w, output: parent_dir(output.pairs),
    threads: job_threads("pairs")
    resources:
        **job_resources("pairs"),
    log:
        "results/logs/pairs/{trainset}.log",
    benchmark:
        "results/benchmarks/pairs/{trainset}.tsv"
    conda:
        ENV
    shell:
        stage_command("pairs") + " --params {params.trainset:q} --corpus {params.corpus} --out {params.out} > {log} 2>&1"
