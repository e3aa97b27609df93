rule embed_shard:
    output:
        directory("results/embedding_shards/{model}/{variant}/{corpus}/{shard}-of-{shards}"),
    input:
        package("embed-shard"),
        model="results/models/{model}/{variant}",
        corpus=corpus_split("test"),
    wildcard_constraints:
        shard="[0-9]+",
        shards="[0-9]+",
    params:
        embedding=lambda w: as_json(embedding_params(w.model, (w.shard, w.shards))),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
    threads: job_threads("embed_shard")
    resources:
        **job_resources("embed_shard"),
    log:
        "results/logs/embed_shard/{model}/{variant}/{corpus}/{shard}-of-{shards}.log",
    benchmark:
        "results/benchmarks/embed_shard/{model}/{variant}/{corpus}/{shard}-of-{shards}.tsv"
    conda:
        ENV
    shell:
        stage_command("embed_shard") + " --params {params.embedding:q} --model {input.model}"
        " --corpus {params.corpus} --out {output} > {log} 2>&1"


rule embed:
    output:
        directory("results/embeddings/{model}/{variant}/{corpus}"),
    input:
        package("embed"),
        model="results/models/{model}/{variant}",
        corpus=corpus_split("test"),
        shards=passage_shards,
    params:
        embedding=lambda w: as_json(embedding_params(w.model)),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
    threads: job_threads("embed")
    resources:
        **job_resources("embed"),
    log:
        "results/logs/embed/{model}/{variant}/{corpus}.log",
    benchmark:
        "results/benchmarks/embed/{model}/{variant}/{corpus}.tsv"
    conda:
        ENV
    shell:
        stage_command("embed") + " --params {params.embedding:q} --model {input.model}"
        " --corpus {params.corpus} --shards {input.shards} --out {output} > {log} 2>&1"
