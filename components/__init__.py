"""Figures and tables for the Attention Explorer: numpy data in, Plotly figures or DataFrames out."""
