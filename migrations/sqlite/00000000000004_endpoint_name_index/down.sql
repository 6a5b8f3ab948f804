DROP INDEX endpoints_name;
