rule embed:
    output:
        directory("results/embeddings/{model}/{variant}/{corpus}"),
    input:
        package("indexing"),
        model="results/models/{model}/{variant}",
        corpus=expand("results/corpora/{{corpus}}/test/{name}.parquet", name=["queries", "passages"]),
    params:
        embedding=lambda w: as_json(
            {**config["embedding"], "index_factory": config["index"]["factory"], "model": config["models"][w.model]}
        ),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
    threads: config["compute"]["threads"]
    resources:
        **job_resources("embed"),
        gpu=config["compute"]["gpus"],
    log:
        "results/logs/embed/{model}/{variant}/{corpus}.log",
    benchmark:
        "results/benchmarks/embed/{model}/{variant}/{corpus}.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch embed --params {params.embedding:q} --model {input.model}"
        " --corpus {params.corpus} --out {output} > {log} 2>&1"
