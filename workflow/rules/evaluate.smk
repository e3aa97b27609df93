rule search:
    output:
        expand("results/runs/{{model}}/{{variant}}/{{corpus}}/{setting}.parquet", setting=SETTINGS),
    input:
        package("evaluation"),
        embeddings="results/embeddings/{model}/{variant}/{corpus}",
        qrels="results/corpora/{corpus}/test/qrels.parquet",
    params:
        search=as_json(config["search"]),
        corpus=lambda w, input: parent_dir(input.qrels),
        out=lambda w, output: parent_dir(output[0]),
    log:
        "results/logs/search/{model}/{variant}/{corpus}.log",
    benchmark:
        "results/benchmarks/search/{model}/{variant}/{corpus}.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch search --params {params.search:q} --embeddings {input.embeddings}"
        " --corpus {params.corpus} --out {params.out} > {log} 2>&1"


rule evaluate:
    output:
        expand(
            "results/metrics/{{model}}/{{variant}}/{{corpus}}/{name}",
            name=["per_query.parquet", "by_language.parquet", "summary.csv"],
        ),
    input:
        package("evaluation"),
        runs=expand("results/runs/{{model}}/{{variant}}/{{corpus}}/{setting}.parquet", setting=SETTINGS),
        qrels="results/corpora/{corpus}/test/qrels.parquet",
        queries="results/corpora/{corpus}/test/queries.parquet",
    params:
        evaluation=lambda w: as_json(
            {**config["evaluation"], "descriptor": descriptor(config, w.corpus, w.model, Variant.parse(w.variant))}
        ),
        run=lambda w, input: parent_dir(input.runs[0]),
        corpus=lambda w, input: parent_dir(input.qrels),
        out=lambda w, output: parent_dir(output[0]),
    log:
        "results/logs/evaluate/{model}/{variant}/{corpus}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{variant}/{corpus}.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch evaluate --params {params.evaluation:q}"
        " --run {params.run} --corpus {params.corpus} --out {params.out} > {log} 2>&1"
