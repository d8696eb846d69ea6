"""The research dashboard (``spy-assets dashboard``): a read-only Streamlit app over the stored
datasets.

``db`` opens a locked-down DuckDB over only the partitions a page reads, ``queries`` holds each
page's reads as plain functions, ``figures`` builds the Plotly charts, ``health`` reads the files'
footers and the Dagster instance, ``views`` draws the pages, ``app`` is the Streamlit entry
script and ``server`` starts it on 127.0.0.1.
"""
