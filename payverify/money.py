"""Money as Decimal (never float): exact comparison, display in the currency's minor units."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

# ISO 4217 exponents that are not 2 (SumUp treats HUF as having no minor unit).
_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "HUF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def minor_units(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_EVEN)


def same_amount(a: Decimal, b: Decimal) -> bool:
    """Equal as amounts (25 == 25.0 == 25.00). Never rounded first: 24.995 is not 25.00."""
    return a == b


def format_amount(amount: Decimal, currency: str) -> str:
    return f"{quantize(amount, currency)} {currency.upper()}"


def format_exact(amount: Decimal, currency: str) -> str:
    """Like format_amount, but never rounded: 25.005 shows as 25.005, so two sums that differ never
    read the same in an alert."""
    if not amount.is_finite() or quantize(amount, currency) != amount:
        return f"{amount} {currency.upper()}"
    return format_amount(amount, currency)
