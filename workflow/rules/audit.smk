rule audit:
    output:
        report="results/audit/audit.txt",
        runs="results/audit/runs.csv",
    input:
        package("audit"),
        tables=rules.tables.output.summary,
    resources:
        **job_resources("audit"),
    log:
        "results/logs/audit/audit.log",
    benchmark:
        "results/benchmarks/audit/audit.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch audit results > {log} 2>&1 && cp {log} {output.report}"
        " && python -m hybridbatch runs results --csv {output.runs} > /dev/null"
