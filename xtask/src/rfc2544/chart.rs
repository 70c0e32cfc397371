//! What the two RFC 2544 charts share: the sides compared, their colours and names, the SVG
//! canvas, the notes under a plot, log-axis bounds and the date in the titles.
//!
//! The charts are drawn with plotters' SVG backend into a string. Without plotters' `ttf` feature
//! text is laid out with fixed per-character estimates and written as SVG `<text>` elements, which
//! the viewer renders with its own fonts: no system font is read here.

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::result::Sweep;
use crate::dut::Dut;

/// One DUT's sweep, or `None` when its run gave no result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Side<'a> {
    pub dut: Dut,
    pub sweep: Option<&'a Sweep>,
}

/// What goes into every title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChartInfo {
    /// The day of the measurement, `YYYY-MM-DD`.
    pub date: String,
}

/// The width of each chart and the height of its plot, pixels; the notes add to the height.
pub(crate) const SIZE: (u32, u32) = (1000, 580);

/// The height of a line of notes under the plot.
const NOTE_LINE: u32 = 18;

/// The colour of a DUT's series.
pub(crate) fn color(dut: Dut) -> RGBColor {
    match dut {
        Dut::Ours => RGBColor(0x1f, 0x5f, 0xbf),
        Dut::Dpdk => RGBColor(0xc8, 0x3c, 0x1e),
    }
}

/// The legend name of a DUT's series.
pub(crate) fn series_name(dut: Dut) -> String {
    match dut {
        Dut::Ours => format!("ours: {}", dut.program()),
        Dut::Dpdk => dut.program().to_string(),
    }
}

/// "oxpmd l2fwd vs DPDK testpmd" for the sides given.
pub(crate) fn duts_title(sides: &[Side]) -> String {
    sides
        .iter()
        .map(|s| s.dut.program())
        .collect::<Vec<_>>()
        .join(" vs ")
}

/// The plot area (above) and the notes area (below) of a canvas.
pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A chart on an [`Area`] with `f64` coordinates of kinds `X` and `Y`.
pub(crate) type Chart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

/// A plotters error as text.
pub(crate) fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

/// A chart of both charts' layout: the title above, room for the tick labels and axis names.
pub(crate) fn chart<'a, 'b, X, Y>(
    area: &'a Area<'b>,
    title: &str,
    x: X,
    y: Y,
) -> Result<Chart<'a, 'b, X::CoordDescType, Y::CoordDescType>, String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
{
    ChartBuilder::on(area)
        .caption(title, ("sans-serif", 19))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

/// Draws the grid, the tick labels (x by [`tick`], y by `y_tick` or plotters' own) and the axis
/// names.
pub(crate) fn mesh<X, Y>(
    chart: &mut Chart<X, Y>,
    x_desc: &str,
    y_desc: &str,
    y_tick: Option<&dyn Fn(&f64) -> String>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| tick(*v))
        .axis_desc_style(("sans-serif", 15));
    if let Some(f) = y_tick {
        mesh.y_label_formatter(f);
    }
    mesh.draw().map_err(err)
}

/// Draws a line through `points` in colour `c`, named `label` in the legend.
pub(crate) fn line<X, Y>(
    chart: &mut Chart<X, Y>,
    points: impl IntoIterator<Item = (f64, f64)>,
    c: RGBColor,
    label: String,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(points, c.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(2)));
    Ok(())
}

/// Draws the legend of the lines, in the lower right corner.
pub(crate) fn legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut Chart<'a, 'b, X, Y>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)
}

/// Draws an SVG of [`SIZE`] and a line per note under it: `draw` gets the plot area.
pub(crate) fn svg(
    notes: &[String],
    draw: impl FnOnce(&Area) -> Result<(), String>,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let height = SIZE.1 + NOTE_LINE * notes.len() as u32 + 10;
        let root = SVGBackend::with_string(&mut out, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (plot, under) = root.split_vertically(SIZE.1);
        draw(&plot)?;
        let style = ("sans-serif", 14).into_font().color(&BLACK);
        for (i, line) in notes.iter().enumerate() {
            let y = 4 + (NOTE_LINE * i as u32) as i32;
            under
                .draw(&Text::new(line.as_str(), (70, y), style.clone()))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// The powers of ten around `lo..=hi` (both > 0), for a log axis.
pub(crate) fn decades(lo: f64, hi: f64) -> (f64, f64) {
    (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
    )
}

/// A tick label of a log axis: whole numbers without decimals, small ones with what they need.
pub(crate) fn tick(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC), by the proleptic Gregorian calendar.
pub(crate) fn date_of(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    // Days since 0000-03-01, so that the leap day ends each 400-, 100- and 4-year cycle.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The date of a file's last change, or of today if it has none.
pub(crate) fn date_of_file(path: &std::path::Path) -> String {
    let t = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| std::time::SystemTime::now());
    date_of(
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

#[cfg(test)]
pub(crate) mod svg_check {
    //! Checks of the SVG text the charts write, and what their tests share.

    use super::{ChartInfo, Side, color};
    use crate::dut::Dut;
    use crate::rfc2544::result::Sweep;

    /// The info of the test charts.
    pub(crate) fn info() -> ChartInfo {
        ChartInfo {
            date: "2026-12-03".into(),
        }
    }

    /// Our side and DPDK's.
    pub(crate) fn sides<'a>(ours: Option<&'a Sweep>, dpdk: Option<&'a Sweep>) -> [Side<'a>; 2] {
        [
            Side {
                dut: Dut::Ours,
                sweep: ours,
            },
            Side {
                dut: Dut::Dpdk,
                sweep: dpdk,
            },
        ]
    }

    /// The stroke colour of `dut`'s lines as the SVG writes it.
    pub(crate) fn stroke(dut: Dut) -> String {
        let c = color(dut);
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    /// Parses `svg` as XML; panics with the parser's message if it is not well-formed.
    pub(crate) fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed XML: {e}"))
    }

    /// The `points` of each `<polyline>` with the stroke colour `rgb` (`#RRGGBB`), in order.
    pub(crate) fn polylines(svg: &str, rgb: &str) -> Vec<Vec<(f64, f64)>> {
        parse(svg)
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .filter(|n| n.attribute("stroke").is_some_and(|s| s.eq_ignore_ascii_case(rgb)))
            .map(|n| {
                n.attribute("points")
                    .unwrap_or("")
                    .split_whitespace()
                    .filter_map(|p| p.split_once(','))
                    .map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap()))
                    .collect()
            })
            .collect()
    }

    /// Every `<text>` of the SVG, without the line breaks around it.
    pub(crate) fn texts(svg: &str) -> Vec<String> {
        parse(svg)
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(date_of(1_798_675_200), "2026-12-31");
    }

    #[test]
    fn log_bounds_are_powers_of_ten() {
        assert_eq!(decades(23.0, 761.9), (10.0, 1000.0));
        assert_eq!(decades(100.0, 100.0), (100.0, 1000.0));
        assert_eq!(decades(0.05, 3.0), (0.01, 10.0));
        assert_eq!((tick(1000.0), tick(0.1)), ("1000".to_string(), "0.1".to_string()));
    }

    #[test]
    fn notes_are_written_under_the_plot() {
        let notes: Vec<String> = (0..7)
            .map(|i| format!("note {i}"))
            .chain(["a & b < c".into()])
            .collect();
        let svg = svg(&notes, |_| Ok(())).unwrap();
        let doc = svg_check::parse(&svg);
        let height: u32 = doc.root_element().attribute("height").unwrap().parse().unwrap();
        assert_eq!(height, SIZE.1 + 8 * NOTE_LINE + 10, "room for every note");
        let texts = svg_check::texts(&svg);
        assert!(texts.contains(&"note 6".to_string()), "{texts:?}");
        assert!(
            texts.contains(&"a & b < c".to_string()),
            "escaped and parsed back"
        );
    }
}
