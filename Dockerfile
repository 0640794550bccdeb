FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY node node
COPY actors actors
COPY adapters adapters
COPY bench bench
COPY sql sql
RUN pip install --no-cache-dir .
EXPOSE 5555 8265
CMD ["execnode", "up"]
