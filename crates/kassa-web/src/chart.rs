//! The balance chart: server-rendered SVG from the history's "balance
//! after" column, integer arithmetic only (money is never a float).

/// The chart's drawing area, in SVG user units.
const WIDTH: i128 = 640;
const HEIGHT: i128 = 200;
const LEFT: i128 = 8;
const TOP: i128 = 24;
const BOTTOM: i128 = 32;

/// A decimal amount as the services print it (`-1234.50`) in minor units;
/// `None` for anything else.
pub fn minor_of(text: &str) -> Option<i128> {
    let digits: String = text.chars().filter(|c| *c != '.').collect();
    digits.parse::<i128>().ok()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG line chart of `points` (oldest first): (date label, balance
/// text). `title` and `desc` give it an accessible name and description.
pub fn balance_svg(points: &[(String, String)], title: &str, desc: &str) -> String {
    let values: Vec<(&str, &str, i128)> =
        points.iter().filter_map(|(label, text)| minor_of(text).map(|v| (label.as_str(), text.as_str(), v))).collect();
    let mut svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"chart-title chart-desc\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title id=\"chart-title\">{}</title><desc id=\"chart-desc\">{}</desc>",
        escape(title),
        escape(desc)
    );
    let plot_height = HEIGHT - TOP - BOTTOM;
    let base_y = TOP + plot_height;
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{base_y}\" x2=\"{}\" y2=\"{base_y}\"/>",
        WIDTH - LEFT
    ));
    if values.is_empty() {
        svg.push_str("</svg>");
        return svg;
    }
    // The scale spans the balances with a margin, so that small changes of
    // a large balance still show; the axis labels say where it starts.
    let least = values.iter().map(|v| v.2).min().unwrap_or(0);
    let most = values.iter().map(|v| v.2).max().unwrap_or(0);
    let margin = ((most - least) / 8).max(1);
    let (low, high) = (least - margin, most + margin);
    let span = high - low;
    let count = i128::try_from(values.len()).unwrap_or(1);
    let plot_width = WIDTH - 2 * LEFT;
    let position = |index: usize, value: i128| {
        let index = i128::try_from(index).unwrap_or(0);
        let x = if count > 1 { LEFT + index * plot_width / (count - 1) } else { WIDTH / 2 };
        let y = TOP + (high - value) * plot_height / span;
        (x, y)
    };
    let path: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let (x, y) = position(index, value.2);
            format!("{x},{y}")
        })
        .collect();
    svg.push_str(&format!("<polyline class=\"line\" points=\"{}\"/>", path.join(" ")));
    for (index, (label, text, value)) in values.iter().enumerate() {
        let (x, y) = position(index, *value);
        svg.push_str(&format!(
            "<circle class=\"dot\" cx=\"{x}\" cy=\"{y}\" r=\"4\"><title>{} · {}</title></circle>",
            escape(label),
            escape(text)
        ));
    }
    let top_label = values.iter().max_by_key(|v| v.2).map_or("", |v| v.1);
    let bottom_label = values.iter().min_by_key(|v| v.2).map_or("", |v| v.1);
    svg.push_str(&format!("<text x=\"{LEFT}\" y=\"{}\">{}</text>", TOP + 4, escape(top_label)));
    if bottom_label != top_label {
        svg.push_str(&format!("<text x=\"{LEFT}\" y=\"{}\">{}</text>", base_y - 6, escape(bottom_label)));
    }
    if let (Some(first), Some(last)) = (values.first(), values.last()) {
        svg.push_str(&format!("<text x=\"{LEFT}\" y=\"{}\">{}</text>", HEIGHT - 8, escape(first.0)));
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} · {}</text>",
            WIDTH - LEFT,
            HEIGHT - 8,
            escape(last.0),
            escape(last.1)
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_as_minor_units_and_plotted_top_to_bottom() {
        assert_eq!(minor_of("-1234.50"), Some(-123_450));
        assert_eq!(minor_of("7"), Some(7));
        assert_eq!(minor_of("x"), None);
        let svg = balance_svg(&[("1".into(), "0.00".into()), ("2".into(), "10.00".into())], "B", "D");
        // The higher balance is drawn higher (a smaller y).
        // 0.00 and 10.00 with a margin of 1.25 either way: y from 24 to 168.
        assert!(svg.contains("points=\"8,153 632,38\""), "{svg}");
        assert!(svg.contains("<title id=\"chart-title\">B</title>"));
        assert!(balance_svg(&[], "<", ">").contains("&lt;"));
    }
}
