rule tables:
    output:
        summary="results/tables/summary.csv",
        tables=expand("results/tables/{name}.{ext}", name=["map", "language_bias"], ext=["md", "csv"]),
        plot="results/plots/map_by_setting.png",
    input:
        package("tables"),
        summaries=all_summaries(),
    log:
        "results/logs/tables/tables.log",
    benchmark:
        "results/benchmarks/tables/tables.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch tables --summaries {input.summaries} --tables results/tables"
        " --plots results/plots > {log} 2>&1"
