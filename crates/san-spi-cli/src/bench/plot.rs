//! `--plot FILE.svg`: latency and bandwidth against message size, log-log, ours and the
//! baselines, two panels in one SVG.

use super::Report;
use plotters::prelude::*;

/// One line of a panel: its label, colour and (size, value) points.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

const OURS: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const OURS_2: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const OURS_3: RGBColor = RGBColor(0xe3, 0x77, 0xc2);
const RAW: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const UDS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const FABRIC: RGBColor = RGBColor(0x94, 0x67, 0xbd);
const MEMCPY: RGBColor = RGBColor(0x55, 0x55, 0x55);

fn color(name: &str) -> RGBColor {
    match name {
        "ours" | "ours-rdma-write" => OURS,
        "ours-send-recv" => OURS_2,
        "ours-rdma-write-bounce" => OURS_3,
        "raw-shm" => RAW,
        "unix-socket" => UDS,
        "libfabric-shm" => FABRIC,
        _ => MEMCPY,
    }
}

fn size_label(v: f64) -> String {
    super::size_name(v.round() as usize)
}

fn bounds(lines: &[Line]) -> (f64, f64, f64, f64) {
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (1.0, 10.0, 0.1, 10.0);
    }
    // Margins on the log scale; a decade on top keeps the legend off the lines.
    (x0 / 1.5, x1 * 1.5, y0 / 2.0, y1 * 12.0)
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    lines: &[Line],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let (x0, x1, y0, y1) = bounds(lines);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale().base(2.0), (y0..y1).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc(y_desc)
        .x_label_formatter(&|v| size_label(*v))
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else if *v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        })
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()
        .map_err(|e| e.to_string())?;
    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let c = line.color;
        chart
            .draw_series(LineSeries::new(line.points.clone(), c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(line.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xbb, 0xbb, 0xbb))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The chart as SVG text.
pub fn svg(report: &Report) -> Result<String, String> {
    let mut latency: Vec<Line> = Vec::new();
    for name in ["ours", "raw-shm", "unix-socket", "libfabric-shm"] {
        let points: Vec<(f64, f64)> = report
            .latency
            .iter()
            .filter(|r| r.name == name && r.p50_us.is_finite() && r.p50_us > 0.0)
            .map(|r| (r.size as f64, r.p50_us))
            .collect();
        let label = match name {
            "libfabric-shm" => "libfabric shm (fi_pingpong, mean)".to_string(),
            "raw-shm" => "raw shared-memory spin (floor)".to_string(),
            "unix-socket" => "Unix socket".to_string(),
            _ => "ours: loopback send/recv".to_string(),
        };
        latency.push(Line {
            label,
            color: color(name),
            points,
        });
    }
    let mut bandwidth: Vec<Line> = Vec::new();
    for name in [
        "ours-rdma-write",
        "ours-rdma-write-bounce",
        "ours-send-recv",
        "memcpy",
        "libfabric-shm",
    ] {
        let points: Vec<(f64, f64)> = report
            .bandwidth
            .iter()
            .filter(|r| r.name == name && r.gb_per_s.is_finite() && r.gb_per_s > 0.0)
            .map(|r| (r.size as f64, r.gb_per_s))
            .collect();
        let label = match name {
            "ours-rdma-write" => "ours: loopback RDMA write",
            "ours-rdma-write-bounce" => "ours: loopback RDMA write, bounce mode",
            "ours-send-recv" => "ours: loopback send/recv",
            "memcpy" => "memcpy, one thread",
            _ => "libfabric shm (fi_pingpong)",
        }
        .to_string();
        bandwidth.push(Line {
            label,
            color: color(name),
            points,
        });
    }
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1200, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (title, body) = root.split_vertically(36);
        title
            .titled(
                &format!(
                    "san-spi bench loopback — {} run, {}",
                    report.mode, report.machine.summary
                ),
                ("sans-serif", 16),
            )
            .map_err(|e| e.to_string())?;
        let (left, right) = body.split_horizontally(600);
        panel(
            &left,
            "one-way latency p50 (round trip / 2)",
            "µs",
            &latency,
        )?;
        panel(&right, "bandwidth", "GB/s", &bandwidth)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
