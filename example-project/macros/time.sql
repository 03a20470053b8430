{#- Years between two epoch-millisecond expressions, as a DOUBLE (365-day years). -#}
{% macro years_between(later_ms, earlier_ms) %}CAST({{ later_ms }} - {{ earlier_ms }} AS DOUBLE) / 1000 / 60 / 60 / 24 / 365{% endmacro %}
