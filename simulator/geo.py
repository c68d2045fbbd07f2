"""The world the simulator lives in: a fixed table of cities and great-circle distance."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True, eq=False)
class City:
    """A place accounts live and merchants trade; `weight` is its share of cardholders."""

    name: str
    country: str
    lat: float
    lon: float
    utc_offset_hours: float
    weight: float
    offset_s: int
    tz: dt.timezone
    # The Unix epoch expressed in this city's offset: epoch + timedelta lands in local time
    # exactly, with no float rounding on the way.
    epoch: dt.datetime


def _city(
    name: str, country: str, lat: float, lon: float, utc_offset_hours: float, weight: float
) -> City:
    tz = dt.timezone(dt.timedelta(hours=utc_offset_hours))
    return City(
        name=name,
        country=country,
        lat=lat,
        lon=lon,
        utc_offset_hours=utc_offset_hours,
        weight=weight,
        offset_s=round(utc_offset_hours * 3600),
        tz=tz,
        epoch=dt.datetime(1970, 1, 1, tzinfo=dt.UTC).astimezone(tz),
    )


# Standard-time offsets, no DST: a fixed offset keeps "local hour" a pure function of event
# time, so a replay gives the same rhythm and the same night-time scenarios. The weights lean
# towards the US because the service bills in USD, but cardholders live everywhere.
CITIES: tuple[City, ...] = (
    _city("New York", "US", 40.7128, -74.0060, -5, 8.0),
    _city("Los Angeles", "US", 34.0522, -118.2437, -8, 6.0),
    _city("Chicago", "US", 41.8781, -87.6298, -6, 5.0),
    _city("Houston", "US", 29.7604, -95.3698, -6, 4.0),
    _city("Miami", "US", 25.7617, -80.1918, -5, 3.0),
    _city("San Francisco", "US", 37.7749, -122.4194, -8, 3.0),
    _city("Seattle", "US", 47.6062, -122.3321, -8, 2.5),
    _city("Denver", "US", 39.7392, -104.9903, -7, 2.0),
    _city("Honolulu", "US", 21.3069, -157.8583, -10, 0.8),
    _city("Toronto", "CA", 43.6532, -79.3832, -5, 2.5),
    _city("Vancouver", "CA", 49.2827, -123.1207, -8, 1.2),
    _city("Mexico City", "MX", 19.4326, -99.1332, -6, 2.0),
    _city("Bogotá", "CO", 4.7110, -74.0721, -5, 0.8),
    _city("Lima", "PE", -12.0464, -77.0428, -5, 0.7),
    _city("São Paulo", "BR", -23.5505, -46.6333, -3, 1.5),
    _city("Buenos Aires", "AR", -34.6037, -58.3816, -3, 1.0),
    _city("London", "GB", 51.5074, -0.1278, 0, 3.0),
    _city("Dublin", "IE", 53.3498, -6.2603, 0, 0.8),
    _city("Paris", "FR", 48.8566, 2.3522, 1, 2.0),
    _city("Berlin", "DE", 52.5200, 13.4050, 1, 1.5),
    _city("Madrid", "ES", 40.4168, -3.7038, 1, 1.2),
    _city("Rome", "IT", 41.9028, 12.4964, 1, 1.0),
    _city("Amsterdam", "NL", 52.3676, 4.9041, 1, 0.9),
    _city("Stockholm", "SE", 59.3293, 18.0686, 1, 0.7),
    _city("Warsaw", "PL", 52.2297, 21.0122, 1, 0.7),
    _city("Lagos", "NG", 6.5244, 3.3792, 1, 0.8),
    _city("Athens", "GR", 37.9838, 23.7275, 2, 0.6),
    _city("Cairo", "EG", 30.0444, 31.2357, 2, 0.7),
    _city("Johannesburg", "ZA", -26.2041, 28.0473, 2, 0.8),
    _city("Istanbul", "TR", 41.0082, 28.9784, 3, 1.0),
    _city("Nairobi", "KE", -1.2921, 36.8219, 3, 0.6),
    _city("Dubai", "AE", 25.2048, 55.2708, 4, 1.0),
    _city("Mumbai", "IN", 19.0760, 72.8777, 5.5, 1.5),
    _city("Delhi", "IN", 28.7041, 77.1025, 5.5, 1.2),
    _city("Bangkok", "TH", 13.7563, 100.5018, 7, 0.8),
    _city("Singapore", "SG", 1.3521, 103.8198, 8, 1.0),
    _city("Hong Kong", "HK", 22.3193, 114.1694, 8, 1.0),
    _city("Shanghai", "CN", 31.2304, 121.4737, 8, 1.2),
    _city("Seoul", "KR", 37.5665, 126.9780, 9, 1.0),
    _city("Tokyo", "JP", 35.6762, 139.6503, 9, 1.5),
    _city("Sydney", "AU", -33.8688, 151.2093, 10, 1.2),
    _city("Melbourne", "AU", -37.8136, 144.9631, 10, 0.9),
    _city("Auckland", "NZ", -36.8485, 174.7633, 12, 0.5),
)


def distance_km(a: City, b: City) -> float:
    """Great-circle (haversine) distance between two cities."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlon = math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))
