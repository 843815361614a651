# The service on PostgreSQL in production: set COMPLIANCE_DATABASE_URL,
# COMPLIANCE_BOOTSTRAP_ADMIN_KEY and COMPLIANCE_ENVIRONMENT=production.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY migrations ./migrations
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 compliance \
    && mkdir /data && chown compliance /data
USER compliance
WORKDIR /data
VOLUME /data
EXPOSE 8000
CMD ["compliance-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
