//! Account statements: opening balance, every transfer of a date range with
//! its counterparty, closing balance; as JSON, CSV or XLSX.
